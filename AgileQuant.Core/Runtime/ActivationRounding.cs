using System.Numerics;
using System.Runtime.InteropServices;

namespace AgileQuant.Core.Runtime;

/// <summary>Rounds activations to the values their quantized codes stand for (quantize then dequantize), in place.</summary>
internal static class ActivationRounding
{
    /// <summary>
    /// Splits <paramref name="values"/> into <paramref name="rows"/> equal rows and rounds each symmetrically:
    /// <c>s = max|x| / (2^(b−1) − 1)</c>, <c>x ← s · clamp(round(x / s))</c> (round half to even).
    /// </summary>
    public static void RoundRows(Span<float> values, int rows, int bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        if (values.Length % rows != 0) throw new ArgumentException($"{values.Length} values do not split into {rows} rows.", nameof(values));
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "Expected 2 to 8 bits.");
        int width = values.Length / rows;
        float limit = (1 << (bits - 1)) - 1;
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = values.Slice(r * width, width);
            // MaxMagnitude returns the element itself, sign included: without Abs a row whose largest element is negative was left unrounded
            float maxAbs = MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(row));
            if (!(maxAbs > 0) || !float.IsFinite(maxAbs)) continue; // all zero stays zero; non-finite is reported elsewhere
            float scale = maxAbs / limit, inverse = 1f / scale;
            RoundRow(row, inverse, limit, scale);
        }
    }

    /// <summary>
    /// The codes behind <see cref="RoundRows"/> of one row: <paramref name="codes"/>[i] = clamp(round(row[i] / s)) and the
    /// returned scale s, so that fp32(codes[i]) · s is the value <see cref="RoundRows"/> leaves (the same operations, bit for
    /// bit, up to the sign of zero). A row of zeros has scale 0; a row that is not finite, scale NaN (and codes 0).
    /// </summary>
    internal static float QuantizeRow(ReadOnlySpan<float> row, int bits, Span<sbyte> codes)
    {
        float limit = (1 << (bits - 1)) - 1;
        float maxAbs = MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(row));
        if (!float.IsFinite(maxAbs) || !(maxAbs > 0))
        {
            codes[..row.Length].Clear();
            return float.IsFinite(maxAbs) ? 0f : float.NaN;
        }
        float scale = maxAbs / limit, inverse = 1f / scale;
        for (int i = 0; i < row.Length; i++) codes[i] = (sbyte)MathF.Max(MathF.Min(MathF.Round(row[i] * inverse), limit), -limit);
        return scale;
    }

    // row[i] = scale · clamp(round(row[i] · inverse), −limit, limit)   (round half to even; one pass, the same float op per element at every width)
    private static void RoundRow(Span<float> row, float inverse, float limit, float scale)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var inverseV = new Vector<float>(inverse);
            var upper = new Vector<float>(limit);
            var lower = new Vector<float>(-limit);
            var scaleV = new Vector<float>(scale);
            Span<Vector<float>> vectors = MemoryMarshal.Cast<float, Vector<float>>(row);
            for (int v = 0; v < vectors.Length; v++)
                vectors[v] = Vector.Max(Vector.Min(Vector.Round(vectors[v] * inverseV), upper), lower) * scaleV;
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < row.Length; i++)
            row[i] = MathF.Max(MathF.Min(MathF.Round(row[i] * inverse), limit), -limit) * scale;
    }

    /// <summary>Rounds probabilities to <c>2^−q</c>, q = clamp(round(−log2 p), 0, 15); p whose round(−log2 p) ≥ 16 become 0 (docs/method.md §1).</summary>
    public static void RoundToPowersOfTwo(Span<float> probabilities)
    {
        for (int i = 0; i < probabilities.Length; i++)
            probabilities[i] = Quantization.Log2Quantizer.Dequantize(Quantization.Log2Quantizer.Quantize(probabilities[i]));
    }
}
