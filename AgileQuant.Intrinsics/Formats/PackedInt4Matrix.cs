namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// A 4-bit weight matrix W (Rows, Cols) with one float scale per group of <see cref="GroupSize"/> input
/// columns: <c>W[r, c] = Scale(r, g) · (Nibble(r, c) − ZeroPoint(r, g))</c>, g = c / GroupSize (the last
/// group of a row may be short, e.g. Cols = 172 with G = 32 ends in a group of 12).
/// </summary>
/// <remarks>
/// Byte layout of <see cref="Packed"/>: row r starts at byte <c>r · RowBytes</c>; byte <c>c / 2</c> of a
/// row holds column c in its LOW nibble when c is even and in its HIGH nibble when c is odd.
/// <see cref="RowBytes"/> = 32 · ceil(Cols / 64): rows are padded with zero nibbles to a whole 64-column
/// block so SIMD kernels read whole 32-byte (AVX2) or 16-byte (AdvSimd) blocks. Nibbles are unsigned 0..15:
/// asymmetric codes are stored as they are with a per-(row, group) zero point 0..15; symmetric signed
/// codes −8..7 are stored as <c>code + 8</c> (the ggml Q4_0 convention) with an implicit zero point 8.
/// </remarks>
public sealed class PackedInt4Matrix : IWeightMatrix
{
    /// <summary>Columns per SIMD block: 64 nibbles = 32 bytes (one AVX2 load).</summary>
    public const int BlockColumns = 64;

    /// <summary>Zero point implied for symmetric matrices (nibble = code + 8).</summary>
    public const int SymmetricZeroPoint = 8;

    /// <summary>Columns per activation group of a matrix that <see cref="TakesActivationGroupScales"/>: its weight groups, 32 (one kernel segment).</summary>
    public const int ActivationGroupColumns = 32;

    private byte[]? _packed; // row-major nibbles; dropped once a kernel repacks the matrix (RepackToRowBlocks), rebuilt on request
    private float[]? _scales; // (Rows, GroupCount); dropped the same way, rebuilt (once) on request
    private readonly byte[]? _zeroPoints;
    private Int4RowBlocks? _rowBlocks;

    private PackedInt4Matrix(int rows, int cols, int groupSize, byte[] packed, float[] scales, byte[]? zeroPoints, bool takesActivationGroupScales = false)
    {
        TakesActivationGroupScales = takesActivationGroupScales;
        Rows = rows;
        Cols = cols;
        GroupSize = groupSize;
        _packed = packed;
        _scales = scales;
        _zeroPoints = zeroPoints;
    }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <summary>Input columns per scale group: 32, 64 or 128.</summary>
    public int GroupSize { get; }

    /// <summary>Groups per row: <c>ceil(Cols / GroupSize)</c>.</summary>
    public int GroupCount => (Cols + GroupSize - 1) / GroupSize;

    /// <summary>Bytes per packed row: <c>32 · ceil(Cols / 64)</c>.</summary>
    public int RowBytes => RowBytesFor(Cols);

    /// <summary>
    /// Whether kernels set to <see cref="ActivationScaleGranularity.PerGroup"/> give each 32-column group of the activations a
    /// scale of its own for this matrix, <c>y = Σ_g s_w[r, g] · s_x[t, g] · acc[t, r, g]</c> (docs/kernels.md, "Activation
    /// scales"): true for GGUF Q4_0 blocks as loaded (llama.cpp pairs them with 32-value activation blocks), false for the
    /// matrices this library quantizes (W4A8 / W4A4 schemes), which keep one activation scale per token.
    /// </summary>
    public bool TakesActivationGroupScales { get; }

    /// <summary>True when codes are symmetric (−8..7 stored as code + 8); false when each group has its own zero point.</summary>
    public bool IsSymmetric => _zeroPoints is null;

    /// <summary>
    /// Packed nibbles (Rows, RowBytes); see the class remarks for the order. Once a kernel that streams the 8-row
    /// interleaved copy has prepared the matrix, it keeps only that copy, and this row-major view is rebuilt (allocated)
    /// on every call: read it once.
    /// </summary>
    public ReadOnlySpan<byte> Packed => PackedArray;

    /// <summary>
    /// Scales (Rows, GroupCount), row-major. Once repacked into the 8-row interleaved copy the matrix keeps only that
    /// copy's scales, and this row-major array is rebuilt from it on the first call and then kept.
    /// </summary>
    public ReadOnlySpan<float> Scales => ScaleArray;

    /// <summary>Zero points (Rows, GroupCount), row-major, one byte 0..15 each; empty when <see cref="IsSymmetric"/>.</summary>
    public ReadOnlySpan<byte> ZeroPoints => _zeroPoints;

    /// <summary>Packed nibbles + 4-byte scales + 1-byte zero points (asymmetric only): what a kernel streams.</summary>
    public long ByteCount => (long)Rows * RowBytes + (long)Rows * GroupCount * (sizeof(float) + (IsSymmetric ? 0 : 1));

    /// <summary>Packs symmetric codes (Rows, Cols), each in −8..7, with scales (Rows, ceil(Cols / groupSize)).</summary>
    public static PackedInt4Matrix FromSymmetricCodes(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, int rows, int cols, int groupSize)
    {
        ValidateShape(codes.Length, scales.Length, rows, cols, groupSize);
        var packed = new byte[(long)rows * RowBytesFor(cols)];
        for (int i = 0; i < codes.Length; i++)
        {
            int code = codes[i];
            if (code is < -8 or > 7)
                throw new ArgumentOutOfRangeException(nameof(codes), $"Expected symmetric 4-bit codes in -8..7, found {code} at ({i / cols}, {i % cols}).");
            SetNibble(packed, cols, i / cols, i % cols, code + SymmetricZeroPoint);
        }
        return new PackedInt4Matrix(rows, cols, groupSize, packed, scales.ToArray(), null);
    }

    /// <summary>
    /// Packs asymmetric codes (Rows, Cols), each in 0..15, with scales and zero points (0..15), both
    /// (Rows, ceil(Cols / groupSize)).
    /// </summary>
    public static PackedInt4Matrix FromAsymmetricCodes(ReadOnlySpan<byte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<byte> zeroPoints, int rows, int cols, int groupSize)
    {
        ValidateShape(codes.Length, scales.Length, rows, cols, groupSize);
        if (zeroPoints.Length != scales.Length)
            throw new ArgumentException($"Expected {scales.Length} zero points (one per scale), found {zeroPoints.Length}.", nameof(zeroPoints));
        foreach (byte zero in zeroPoints)
            if (zero > 15) throw new ArgumentOutOfRangeException(nameof(zeroPoints), $"Expected zero points in 0..15, found {zero}.");
        var packed = new byte[(long)rows * RowBytesFor(cols)];
        for (int i = 0; i < codes.Length; i++)
        {
            if (codes[i] > 15)
                throw new ArgumentOutOfRangeException(nameof(codes), $"Expected asymmetric 4-bit codes in 0..15, found {codes[i]} at ({i / cols}, {i % cols}).");
            SetNibble(packed, cols, i / cols, i % cols, codes[i]);
        }
        return new PackedInt4Matrix(rows, cols, groupSize, packed, scales.ToArray(), zeroPoints.ToArray());
    }

    /// <summary>
    /// Wraps already packed nibbles (Rows, RowBytes) laid out as in the class remarks, with scales and (when
    /// asymmetric) zero points 0..15, both (Rows, ceil(Cols / groupSize)); pass an empty
    /// <paramref name="zeroPoints"/> for a symmetric matrix. Everything is copied and validated (lengths,
    /// zero points, zero padding nibbles past Cols), nothing is re-quantized: the inverse of reading
    /// <see cref="Packed"/>, <see cref="Scales"/> and <see cref="ZeroPoints"/>.
    /// </summary>
    public static PackedInt4Matrix FromPacked(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, ReadOnlySpan<byte> zeroPoints, int rows, int cols, int groupSize) =>
        FromPacked(packed, scales, zeroPoints, rows, cols, groupSize, takesActivationGroupScales: false);

    /// <summary>
    /// <see cref="FromPacked(ReadOnlySpan{byte}, ReadOnlySpan{float}, ReadOnlySpan{byte}, int, int, int)"/>, with
    /// <see cref="TakesActivationGroupScales"/> set as given (a format read from a file whose blocks are meant to meet
    /// activations scaled per group of 32, such as GGUF Q4_0); <paramref name="groupSize"/> must then be 32.
    /// </summary>
    public static PackedInt4Matrix FromPacked(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, ReadOnlySpan<byte> zeroPoints, int rows, int cols, int groupSize,
        bool takesActivationGroupScales)
    {
        if (takesActivationGroupScales && groupSize != ActivationGroupColumns)
            throw new ArgumentOutOfRangeException(nameof(groupSize), $"Expected a group size of {ActivationGroupColumns} for per-group activation scales, found {groupSize}.");
        ValidateShape((long)rows * cols, scales.Length, rows, cols, groupSize);
        int rowBytes = RowBytesFor(cols);
        if (packed.Length != (long)rows * rowBytes)
            throw new ArgumentException($"Expected {(long)rows * rowBytes} packed bytes ({rows} rows x {rowBytes}), found {packed.Length}.", nameof(packed));
        if (!zeroPoints.IsEmpty && zeroPoints.Length != scales.Length)
            throw new ArgumentException($"Expected {scales.Length} zero points (one per scale) or none (symmetric), found {zeroPoints.Length}.", nameof(zeroPoints));
        foreach (byte zero in zeroPoints)
            if (zero > 15) throw new ArgumentOutOfRangeException(nameof(zeroPoints), $"Expected zero points in 0..15, found {zero}.");
        for (int r = 0; r < rows; r++)
            for (int c = cols; c < 2 * rowBytes; c++)
            {
                byte pair = packed[r * rowBytes + c / 2];
                if (((c & 1) == 0 ? pair & 0xF : pair >> 4) != 0)
                    throw new ArgumentException($"Expected zero padding nibbles past column {cols - 1}, found a non-zero nibble at ({r}, {c}).", nameof(packed));
            }
        return new PackedInt4Matrix(rows, cols, groupSize, packed.ToArray(), scales.ToArray(), zeroPoints.IsEmpty ? null : zeroPoints.ToArray(), takesActivationGroupScales);
    }

    /// <summary>The stored nibble (0..15) of element (r, c).</summary>
    public int Nibble(int r, int c)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)r, (uint)Rows, nameof(r));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)c, (uint)Cols, nameof(c));
        byte[]? packed = Volatile.Read(ref _packed);
        if (packed is null) return RowBlocks!.Nibble(r, c);
        byte pair = packed[(long)r * RowBytes + c / 2];
        return (c & 1) == 0 ? pair & 0xF : pair >> 4;
    }

    /// <summary>Zero point of group g in row r (8 when symmetric).</summary>
    public int ZeroPoint(int r, int g) => _zeroPoints is null ? SymmetricZeroPoint : _zeroPoints[r * GroupCount + g];

    /// <summary>Scale of group g in row r.</summary>
    public float Scale(int r, int g) => Volatile.Read(ref _scales) is float[] scales ? scales[r * GroupCount + g] : RowBlocks!.ScaleAt(RowBlocks.ScaleIndex(r, g));

    /// <summary>The dequantized weight <c>Scale(r, g) · (Nibble(r, c) − ZeroPoint(r, g))</c>.</summary>
    public float Dequantize(int r, int c) => Scale(r, c / GroupSize) * (Nibble(r, c) - ZeroPoint(r, c / GroupSize));

    internal byte[] PackedArray => Volatile.Read(ref _packed) ?? RowBlocks!.ToRowMajor(RowBytes);

    /// <summary>The 8-row interleaved copy the x86 and AdvSimd kernels stream; null until one of them prepares the matrix (<see cref="RepackToRowBlocks"/>).</summary>
    internal Int4RowBlocks? RowBlocks => Volatile.Read(ref _rowBlocks);

    /// <summary>
    /// Repacks the matrix into <see cref="Int4RowBlocks"/> once (thread-safe: one copy wins) and drops the row-major
    /// nibbles and scales, so the weights are held once: the row blocks carry the same nibbles and scale values, and the
    /// row-major views are rebuilt from them only if something asks (serialization, the scalar kernel, TRIP's
    /// reference pass). Called by the kernels that stream row blocks, when a model is built or on their first call; those
    /// that read only the exact half scales when they exist (x86) pass <paramref name="keepFloatScales"/> false, so the
    /// float copy is dropped then (<see cref="Int4RowBlocks.Scales"/>); <paramref name="halfScales"/> false makes no half
    /// copy (tests: the float path on scales that halves hold). The first repack decides.
    /// </summary>
    internal Int4RowBlocks RepackToRowBlocks(bool keepFloatScales = true, bool halfScales = true)
    {
        if (RowBlocks is { } built) return built;
        var blocks = new Int4RowBlocks(this, keepFloatScales, halfScales);
        Int4RowBlocks winner = Interlocked.CompareExchange(ref _rowBlocks, blocks, null) ?? blocks;
        // published before the row-major arrays go: a reader that finds them dropped finds the row blocks
        Volatile.Write(ref _packed, null);
        Volatile.Write(ref _scales, null);
        return winner;
    }
    internal float[] ScaleArray => Volatile.Read(ref _scales) ?? RebuildScales();
    internal byte[]? ZeroPointArray => _zeroPoints;

    // scales[r, g] (Rows, GroupCount) ← the row blocks' copy; built once, kept (thread-safe: one copy wins)
    private float[] RebuildScales()
    {
        var scales = new float[(long)Rows * GroupCount];
        for (int r = 0; r < Rows; r++)
            for (int g = 0; g < GroupCount; g++) scales[(long)r * GroupCount + g] = RowBlocks!.ScaleAt(RowBlocks.ScaleIndex(r, g));
        return Interlocked.CompareExchange(ref _scales, scales, null) ?? scales;
    }

    private static int RowBytesFor(int cols) => (cols + BlockColumns - 1) / BlockColumns * (BlockColumns / 2);

    private static void SetNibble(byte[] packed, int cols, int r, int c, int nibble)
    {
        long at = (long)r * RowBytesFor(cols) + c / 2;
        packed[at] |= (byte)((c & 1) == 0 ? nibble : nibble << 4);
    }

    private static void ValidateShape(long codeCount, int scaleCount, int rows, int cols, int groupSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (groupSize is not (32 or 64 or 128))
            throw new ArgumentOutOfRangeException(nameof(groupSize), $"Expected a group size of 32, 64 or 128, found {groupSize}.");
        if ((long)rows * RowBytesFor(cols) > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Expected at most {Array.MaxLength} packed bytes, found a {rows}x{cols} matrix.");
        if (codeCount != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} codes for a {rows}x{cols} matrix, found {codeCount}.", "codes");
        long groups = (long)rows * ((cols + groupSize - 1) / groupSize);
        if (scaleCount != groups)
            throw new ArgumentException($"Expected {groups} scales ({rows} rows x {(cols + groupSize - 1) / groupSize} groups of {groupSize}), found {scaleCount}.", "scales");
    }
}
