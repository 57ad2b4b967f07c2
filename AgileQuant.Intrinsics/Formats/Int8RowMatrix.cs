namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// An 8-bit weight matrix W (Rows, Cols) with one float scale per row: <c>W[r, c] = Scale(r) · Code(r, c)</c>,
/// codes in −128..127 (symmetric).
/// </summary>
/// <remarks>
/// Row r's codes start at <c>r · RowStride</c> of <see cref="Codes"/>; <see cref="RowStride"/> =
/// 32 · ceil(Cols / 32) with zero padding, so SIMD kernels read whole 32-byte blocks.
/// </remarks>
public sealed class Int8RowMatrix : IWeightMatrix
{
    /// <summary>Columns per SIMD block (one 256-bit vector of int8).</summary>
    public const int BlockColumns = 32;

    private sbyte[]? _codes; // row-major codes; on AVX2 machines dropped after repacking and rebuilt on request
    private readonly float[] _scales;

    /// <summary>Copies codes (Rows, Cols) and per-row scales (Rows) into the padded layout.</summary>
    public Int8RowMatrix(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        int stride = StrideFor(cols);
        if ((long)rows * stride > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Expected at most {Array.MaxLength} padded codes, found a {rows}x{cols} matrix.");
        if (codes.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} codes for a {rows}x{cols} matrix, found {codes.Length}.", nameof(codes));
        if (scales.Length != rows)
            throw new ArgumentException($"Expected {rows} row scales, found {scales.Length}.", nameof(scales));
        Rows = rows;
        Cols = cols;
        _scales = scales.ToArray();
        // Repacked straight from the caller's codes for the x86 kernels: the padded row-major copy is then never built
        // (the weights are held once, with no transient copy at load) and is rebuilt from the row blocks only if
        // something asks for it (serialization).
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
        {
            RowBlocks = new Int8RowBlocks(codes, cols, scales, rows, cols);
            return;
        }
        _codes = new sbyte[rows * stride];
        for (int r = 0; r < rows; r++) codes.Slice(r * cols, cols).CopyTo(_codes.AsSpan(r * stride, cols));
    }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <summary>Codes per stored row: <c>32 · ceil(Cols / 32)</c>.</summary>
    public int RowStride => StrideFor(Cols);

    /// <summary>
    /// Codes (Rows, RowStride), zero-padded past Cols. Where AVX2 is enabled the matrix keeps only its 8-row interleaved
    /// kernel copy, and this row-major view is rebuilt (allocated) on every call: read it once.
    /// </summary>
    public ReadOnlySpan<sbyte> Codes => CodeArray;

    /// <summary>Per-row scales (Rows).</summary>
    public ReadOnlySpan<float> Scales => _scales;

    /// <summary>Padded codes + 4-byte row scales: what a kernel streams.</summary>
    public long ByteCount => (long)Rows * RowStride + (long)Rows * sizeof(float);

    /// <summary>Code of element (r, c).</summary>
    public int Code(int r, int c)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)r, (uint)Rows, nameof(r));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)c, (uint)Cols, nameof(c));
        return _codes is null ? RowBlocks!.Code(r, c) : _codes[r * RowStride + c];
    }

    internal sbyte[] CodeArray => _codes ?? RowBlocks!.ToRowMajor(RowStride);

    /// <summary>The 8-row interleaved copy the AVX2 kernel streams; null where AVX2 is not enabled.</summary>
    internal Int8RowBlocks? RowBlocks { get; }
    internal float[] ScaleArray => _scales;

    private static int StrideFor(int cols) => (cols + BlockColumns - 1) / BlockColumns * BlockColumns;
}
