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

    private sbyte[]? _codes; // (Rows, RowStride) row-major codes; dropped once a kernel repacks the matrix (RepackToRowBlocks), rebuilt on request
    private readonly float[] _scales;
    private Int8RowBlocks? _rowBlocks;

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
    /// Codes (Rows, RowStride), zero-padded past Cols. Once a kernel that streams the 8-row interleaved copy has prepared
    /// the matrix, it keeps only that copy, and this row-major view is rebuilt (allocated) on every call: read it once.
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
        sbyte[]? codes = Volatile.Read(ref _codes);
        return codes is null ? RowBlocks!.Code(r, c) : codes[r * RowStride + c];
    }

    internal sbyte[] CodeArray => Volatile.Read(ref _codes) ?? RowBlocks!.ToRowMajor(RowStride);

    /// <summary>The 8-row interleaved copy the x86 kernels stream; null until one of them prepares the matrix (<see cref="RepackToRowBlocks"/>).</summary>
    internal Int8RowBlocks? RowBlocks => Volatile.Read(ref _rowBlocks);

    /// <summary>
    /// Repacks the matrix into <see cref="Int8RowBlocks"/> once (thread-safe: one copy wins) and drops the row-major
    /// codes, so the weights are held once; the row-major view is rebuilt from the blocks only if something asks
    /// (serialization, the ARM kernel, TRIP's reference pass). Called by the kernels that stream row blocks, when a
    /// model is built or on their first call.
    /// </summary>
    internal Int8RowBlocks RepackToRowBlocks()
    {
        if (RowBlocks is { } built) return built;
        if (Volatile.Read(ref _codes) is not { } codes) return RowBlocks!; // dropped: another thread published the blocks first
        var blocks = new Int8RowBlocks(codes, RowStride, _scales, Rows, Cols);
        Int8RowBlocks winner = Interlocked.CompareExchange(ref _rowBlocks, blocks, null) ?? blocks;
        // published before the row-major codes go: a reader that finds them dropped finds the row blocks
        Volatile.Write(ref _codes, null);
        return winner;
    }
    internal float[] ScaleArray => _scales;

    private static int StrideFor(int cols) => (cols + BlockColumns - 1) / BlockColumns * BlockColumns;
}
