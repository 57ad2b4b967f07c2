namespace AgileQuant.Core.Quantization;

/// <summary>
/// Round-to-nearest (RTN) weight quantization: each (row, group) gets parameters fitted to its own
/// values (<see cref="UniformQuantizationParameters.Fit{T}(ReadOnlySpan{T}, QuantizerSettings)"/>),
/// then <c>q[r, c] = clamp(round(w[r, c] / s[r, g]) + z[r, g], qmin, qmax)</c> with no error compensation.
/// </summary>
public static class RoundToNearestQuantizer
{
    /// <summary>Quantizes <paramref name="weight"/>, (rows, cols) row-major, per row or per group of columns.</summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity.</exception>
    public static QuantizedMatrix Quantize(ReadOnlySpan<float> weight, int rows, int cols, QuantizerSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        ValidateShape(weight.Length, rows, cols, nameof(weight));
        NonFiniteValueException.ThrowIfAny(weight, Math.Max(cols, 1), nameof(weight));

        int groupSize = settings.EffectiveGroupSize(cols);
        int groups = (cols + groupSize - 1) / groupSize;
        var codes = new byte[rows * cols];                              // (rows, cols)
        var scales = new float[rows * groups];                          // (rows, groups)
        byte[]? zeros = settings.Symmetric ? null : new byte[rows * groups]; // (rows, groups)
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                int start = g * groupSize, width = Math.Min(groupSize, cols - start);
                var values = weight.Slice(r * cols + start, width);
                var p = UniformQuantizationParameters.Fit(values, settings);
                scales[r * groups + g] = p.Scale;
                if (zeros is not null) zeros[r * groups + g] = (byte)p.ZeroPoint;
                var rowCodes = codes.AsSpan(r * cols + start, width);
                for (int c = 0; c < width; c++) rowCodes[c] = unchecked((byte)p.Quantize(values[c]));
            }
        }
        return new QuantizedMatrix(rows, cols, settings.Bits, groupSize, settings.Symmetric, codes, scales, zeros);
    }

    internal static void ValidateShape(int length, int rows, int cols, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if ((long)rows * cols != length)
            throw new ArgumentException($"{name}: expected {rows}x{cols} = {(long)rows * cols} elements, found {length}", name);
    }
}
