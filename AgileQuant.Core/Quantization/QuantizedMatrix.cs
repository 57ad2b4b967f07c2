using System.Runtime.InteropServices;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// A (rows, cols) matrix of b-bit uniform codes with one scale (and zero point) per row and group of
/// <see cref="GroupSize"/> consecutive columns: <c>x̂[r, c] = Scales[r, g] · (q[r, c] - z[r, g])</c>,
/// <c>g = c / GroupSize</c>. Per-row (and per-token) quantization is the case <c>GroupSize = Cols</c>.
/// One code per byte, unpacked; packing into kernel formats happens elsewhere.
/// </summary>
public sealed class QuantizedMatrix
{
    /// <summary>
    /// Wraps existing buffers (no copy). <paramref name="codes"/> is (rows, cols): symmetric codes stored as
    /// the two's-complement byte of the signed code, asymmetric codes as unsigned values;
    /// <paramref name="scales"/> and <paramref name="zeroPoints"/> are (rows, groups).
    /// </summary>
    public QuantizedMatrix(int rows, int cols, int bits, int groupSize, bool symmetric,
        byte[] codes, float[] scales, byte[]? zeroPoints)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        UniformQuantizationParameters.ValidateBits(bits);
        ArgumentOutOfRangeException.ThrowIfLessThan(groupSize, 1);
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(scales);
        int groups = (cols + groupSize - 1) / groupSize;
        if (codes.LongLength != (long)rows * cols)
            throw new ArgumentException($"codes: expected {rows}x{cols} = {(long)rows * cols} elements, found {codes.Length}", nameof(codes));
        if (scales.LongLength != (long)rows * groups)
            throw new ArgumentException($"scales: expected {rows}x{groups} elements, found {scales.Length}", nameof(scales));
        if (symmetric != zeroPoints is null)
            throw new ArgumentException(symmetric ? "symmetric codes take no zero points" : "asymmetric codes need zero points", nameof(zeroPoints));
        if (zeroPoints is not null && zeroPoints.LongLength != (long)rows * groups)
            throw new ArgumentException($"zeroPoints: expected {rows}x{groups} elements, found {zeroPoints.Length}", nameof(zeroPoints));
        Rows = rows;
        Cols = cols;
        Bits = bits;
        GroupSize = groupSize;
        GroupCount = groups;
        Symmetric = symmetric;
        Codes = codes;
        Scales = scales;
        ZeroPoints = zeroPoints;
    }

    /// <summary>Number of rows (output channels or tokens).</summary>
    public int Rows { get; }

    /// <summary>Number of columns (input channels).</summary>
    public int Cols { get; }

    /// <summary>Bits per code, 2..8.</summary>
    public int Bits { get; }

    /// <summary>Columns per group; equals <see cref="Cols"/> for per-row quantization. The last group may be shorter.</summary>
    public int GroupSize { get; }

    /// <summary>Groups per row: <c>ceil(Cols / GroupSize)</c>.</summary>
    public int GroupCount { get; }

    /// <summary>True for signed codes in <c>[-2^(b-1), 2^(b-1)-1]</c> and no zero points.</summary>
    public bool Symmetric { get; }

    /// <summary>Codes, (rows, cols), one per byte; read signed codes through <see cref="SignedCodes"/>.</summary>
    public byte[] Codes { get; }

    /// <summary>The codes reinterpreted as signed bytes (meaningful when <see cref="Symmetric"/>).</summary>
    public ReadOnlySpan<sbyte> SignedCodes => MemoryMarshal.Cast<byte, sbyte>(Codes.AsSpan());

    /// <summary>Scales, (rows, groups).</summary>
    public float[] Scales { get; }

    /// <summary>Zero points, (rows, groups); null when <see cref="Symmetric"/>.</summary>
    public byte[]? ZeroPoints { get; }

    /// <summary>The integer code at (<paramref name="row"/>, <paramref name="col"/>), signed when symmetric.</summary>
    public int GetCode(int row, int col)
    {
        ValidatePosition(row, col);
        byte raw = Codes[(long)row * Cols + col];
        return Symmetric ? (sbyte)raw : raw;
    }

    /// <summary>The quantizer of group <paramref name="group"/> in row <paramref name="row"/>.</summary>
    public UniformQuantizationParameters GetParameters(int row, int group)
    {
        if ((uint)row >= (uint)Rows || (uint)group >= (uint)GroupCount)
            throw new ArgumentOutOfRangeException(nameof(group), $"expected row < {Rows} and group < {GroupCount}, found ({row}, {group})");
        long index = (long)row * GroupCount + group;
        return UniformQuantizationParameters.FromStored(Scales[index], ZeroPoints?[index] ?? 0, Bits, Symmetric);
    }

    /// <summary><c>destination[c] = Scales[row, c/G] · (q[row, c] - z[row, c/G])</c> for one row.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"expected 0..{Rows - 1}");
        if (destination.Length < Cols)
            throw new ArgumentException($"destination too short: expected {Cols} elements, found {destination.Length}", nameof(destination));
        for (int g = 0; g < GroupCount; g++)
        {
            var p = GetParameters(row, g);
            int start = g * GroupSize, end = Math.Min(start + GroupSize, Cols);
            for (int c = start; c < end; c++)
            {
                byte raw = Codes[(long)row * Cols + c];
                destination[c] = p.Dequantize(Symmetric ? (sbyte)raw : raw);
            }
        }
    }

    /// <summary>The dequantized matrix x̂, (rows, cols).</summary>
    public float[] Dequantize()
    {
        var result = new float[(long)Rows * Cols]; // (rows, cols)
        for (int r = 0; r < Rows; r++) DequantizeRow(r, result.AsSpan(r * Cols, Cols));
        return result;
    }

    private void ValidatePosition(int row, int col)
    {
        if ((uint)row >= (uint)Rows || (uint)col >= (uint)Cols)
            throw new ArgumentOutOfRangeException(nameof(col), $"expected a position inside {Rows}x{Cols}, found ({row}, {col})");
    }
}
