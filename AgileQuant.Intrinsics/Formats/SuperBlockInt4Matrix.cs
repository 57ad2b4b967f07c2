using System.Buffers.Binary;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// A weight matrix W (Rows, Cols) of 4-bit codes under two levels of scales, as ggml's k-quants, Q4_1 and 4-bit
/// i-quants store them (the <see cref="Scheme"/> says which): per (row, sub-block s) an integer scale <c>sc</c> (and
/// minimum <c>m</c>), per (row, super-block b) a half-precision scale <c>d</c> (and minimum <c>dmin</c>), and
/// <c>W[r, c] = (d[r, b] · sc[r, s]) · v(q[r, c]) − dmin[r, b] · m[r, s]</c>, each product and the difference rounded to
/// float in that order (ggml's <c>dequantize_row_*</c>), v from <see cref="SuperBlockInt4Scheme.Value"/>. Cols is a
/// multiple of the super-block size.
/// </summary>
/// <remarks>
/// Held once, in the layout every kernel streams (docs/kernels.md, "Super-block 4-bit formats"). Rows are taken in blocks
/// of 8 and blocks in pairs (16 rows, the last pair padded with zero rows), columns in chunks of 8:
/// <list type="bullet">
/// <item><see cref="Packed"/> (pairs, chunks, 2 blocks, 8 rows, 4 bytes): byte j of row i's 4 holds column 8k + j in its
/// low nibble and 8k + j + 4 in its high nibble, as <see cref="Int4RowBlocks"/> (one 64-byte line per pair and chunk).</item>
/// <item><see cref="SubScales"/> (pairs, sub-blocks, 16 rows) sbyte: <c>sc</c>.</item>
/// <item><see cref="Corrections"/> (pairs, super-blocks, ⌈sub-blocks per super-block / 2⌉, 16 rows, 2) sbyte: the
/// kernels' integer correction <c>c</c> of sub-blocks 2j and 2j + 1 side by side (0 past the last): <c>m</c> with minimums,
/// <c>CodeOffset · sc</c> with a code offset; null when neither.</item>
/// <item><see cref="SuperScales"/> and <see cref="CorrectionScales"/> (pairs, super-blocks, 16 rows) half bits: <c>d</c>,
/// and the correction's scale <c>e</c> (<c>dmin</c> with minimums, <c>d</c> with a code offset; null when no correction).</item>
/// </list>
/// The kernels compute <c>y = s_x · Σ_b (d_b · Σ_{s∈b} sc_s · Σ_{c∈s} u(q_c) · x_c − e_b · Σ_{s∈b} c_s · Σ_{c∈s} x_c)</c>
/// with u(q) = <c>Codebook[q]</c> or q (docs/kernels.md): the same weights, exactly, as <see cref="Dequantize"/> before its
/// final rounding.
/// </remarks>
public sealed class SuperBlockInt4Matrix : IWeightMatrix
{
    /// <summary>Rows per block (one int32 lane each in a 256-bit vector).</summary>
    internal const int BlockRows = 8;

    /// <summary>Rows per stored pair of blocks.</summary>
    internal const int PairRows = 2 * BlockRows;

    /// <summary>Columns per chunk (4 per nibble half).</summary>
    internal const int ChunkColumns = 8;

    /// <summary>Bytes of one chunk of a block pair.</summary>
    internal const int ChunkStride = 64;

    private SuperBlockInt4Matrix(SuperBlockInt4Scheme scheme, int rows, int cols)
    {
        Scheme = scheme;
        Rows = rows;
        Cols = cols;
        Pairs = (rows + PairRows - 1) / PairRows;
        Chunks = cols / ChunkColumns;
        SubBlocks = cols / scheme.SubBlockSize;
        SuperBlocks = cols / scheme.SuperBlockSize;
        CorrectionPairs = (scheme.SubBlocksPerSuperBlock + 1) / 2;
        Packed = HugePages.AllocatePinned<byte>(checked(Pairs * Chunks * ChunkStride), zeroed: true);
        SubScales = HugePages.AllocatePinned<sbyte>(checked(Pairs * SubBlocks * PairRows), zeroed: true);
        SuperScales = HugePages.AllocatePinned<ushort>(checked(Pairs * SuperBlocks * PairRows), zeroed: true);
        if (scheme.HasCorrection)
        {
            Corrections = HugePages.AllocatePinned<sbyte>(checked(Pairs * SuperBlocks * CorrectionPairs * 2 * PairRows), zeroed: true);
            CorrectionScales = HugePages.AllocatePinned<ushort>(SuperScales.Length, zeroed: true);
        }
    }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <summary>How codes and scales are read.</summary>
    public SuperBlockInt4Scheme Scheme { get; }

    /// <summary>Sub-blocks per row.</summary>
    public int SubBlocks { get; }

    /// <summary>Super-blocks per row.</summary>
    public int SuperBlocks { get; }

    /// <summary>Stored block pairs: <c>ceil(Rows / 16)</c>.</summary>
    internal int Pairs { get; }

    /// <summary>8-column chunks per row.</summary>
    internal int Chunks { get; }

    /// <summary>Correction pairs per super-block: <c>ceil(sub-blocks per super-block / 2)</c>.</summary>
    internal int CorrectionPairs { get; }

    /// <summary>Nibbles (pairs, chunks, 2 blocks, 8 rows, 4 bytes); see the class remarks.</summary>
    internal byte[] Packed { get; }

    /// <summary>Sub-block scales (pairs, sub-blocks, 16 rows).</summary>
    internal sbyte[] SubScales { get; }

    /// <summary>Correction terms (pairs, super-blocks, correction pairs, 16 rows, 2); null without correction.</summary>
    internal sbyte[]? Corrections { get; }

    /// <summary>Super-block scales d (pairs, super-blocks, 16 rows), IEEE half bits.</summary>
    internal ushort[] SuperScales { get; }

    /// <summary>Correction scales e (pairs, super-blocks, 16 rows), IEEE half bits; null without correction.</summary>
    internal ushort[]? CorrectionScales { get; }

    /// <summary>Bytes a kernel streams: nibbles, sub-block scales and corrections (one byte each), half super-block scales.</summary>
    public long ByteCount => (long)Packed.Length + SubScales.Length + (Corrections?.Length ?? 0) + 2L * (SuperScales.Length + (CorrectionScales?.Length ?? 0));

    /// <summary>
    /// Builds the matrix from row-major parts, copying and checking them (nothing is re-quantized).
    /// </summary>
    /// <param name="scheme">How codes and scales are read.</param>
    /// <param name="rows">Rows, ≥ 1.</param>
    /// <param name="cols">Columns, a positive multiple of the super-block size.</param>
    /// <param name="packed">Codes (Rows, Cols / 2): column c in the low nibble of byte c / 2 when c is even, else the high nibble.</param>
    /// <param name="superScales">d (Rows, Cols / SuperBlockSize), finite.</param>
    /// <param name="superMins">dmin (Rows, Cols / SuperBlockSize), finite; empty unless the scheme has minimums.</param>
    /// <param name="subScales">sc (Rows, Cols / SubBlockSize); with a code offset, <c>CodeOffset · sc</c> must lie in −128..127.</param>
    /// <param name="subMins">m (Rows, Cols / SubBlockSize), each 0..127; empty unless the scheme has minimums.</param>
    public static SuperBlockInt4Matrix Create(SuperBlockInt4Scheme scheme, int rows, int cols, ReadOnlySpan<byte> packed,
        ReadOnlySpan<Half> superScales, ReadOnlySpan<Half> superMins, ReadOnlySpan<sbyte> subScales, ReadOnlySpan<byte> subMins)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (cols % scheme.SuperBlockSize != 0)
            throw new ArgumentException($"Expected a column count that is a multiple of the super-block size {scheme.SuperBlockSize}, found {cols}.", nameof(cols));
        if ((long)rows * cols / 2 > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Expected at most {Array.MaxLength} packed bytes, found a {rows}x{cols} matrix.");
        int superPerRow = cols / scheme.SuperBlockSize, subPerRow = cols / scheme.SubBlockSize;
        RequireLength(packed.Length, (long)rows * cols / 2, "packed code bytes", nameof(packed));
        RequireLength(superScales.Length, (long)rows * superPerRow, "super-block scales", nameof(superScales));
        RequireLength(subScales.Length, (long)rows * subPerRow, "sub-block scales", nameof(subScales));
        RequireLength(superMins.Length, scheme.HasMins ? (long)rows * superPerRow : 0, "super-block minimums", nameof(superMins));
        RequireLength(subMins.Length, scheme.HasMins ? (long)rows * subPerRow : 0, "sub-block minimums", nameof(subMins));
        for (int i = 0; i < superScales.Length; i++)
            if (!Half.IsFinite(superScales[i]) || (scheme.HasMins && !Half.IsFinite(superMins[i])))
                throw new ArgumentException($"Expected finite super-block scales and minimums, found {superScales[i]} / {(scheme.HasMins ? superMins[i] : default)} at ({i / superPerRow}, {i % superPerRow}).", nameof(superScales));
        foreach (byte m in subMins)
            if (m > sbyte.MaxValue) throw new ArgumentOutOfRangeException(nameof(subMins), $"Expected sub-block minimums in 0..127, found {m}.");
        if (scheme.CodeOffset != 0)
            foreach (sbyte sc in subScales)
                if (scheme.CodeOffset * sc is < sbyte.MinValue or > sbyte.MaxValue)
                    throw new ArgumentOutOfRangeException(nameof(subScales), $"Expected code offset {scheme.CodeOffset} times each sub-block scale in -128..127, found scale {sc}.");

        var matrix = new SuperBlockInt4Matrix(scheme, rows, cols);
        matrix.Fill(packed, superScales, superMins, subScales, subMins);
        return matrix;
    }

    private static void RequireLength(long found, long expected, string what, string parameter)
    {
        if (found != expected) throw new ArgumentException($"Expected {expected} {what}, found {found}.", parameter);
    }

    // The row-major parts → the pair layout of the class remarks.
    private void Fill(ReadOnlySpan<byte> packed, ReadOnlySpan<Half> superScales, ReadOnlySpan<Half> superMins, ReadOnlySpan<sbyte> subScales, ReadOnlySpan<byte> subMins)
    {
        SuperBlockInt4Scheme scheme = Scheme;
        int rowBytes = Cols / 2;
        for (int r = 0; r < Rows; r++)
        {
            ReadOnlySpan<byte> row = packed.Slice((int)((long)r * rowBytes), rowBytes);
            long target = ChunkOffset(r, 0);
            for (int k = 0; k < Chunks; k++)
                BinaryPrimitives.WriteUInt32LittleEndian(Packed.AsSpan((int)(target + (long)k * ChunkStride), 4),
                    Int4RowBlocks.PairNibbles(BinaryPrimitives.ReadUInt32LittleEndian(row.Slice(4 * k, 4))));
            for (int s = 0; s < SubBlocks; s++)
            {
                sbyte sc = subScales[r * SubBlocks + s];
                SubScales[SubScaleIndex(r, s)] = sc;
                if (Corrections is not null)
                    Corrections[CorrectionIndex(r, s)] = scheme.HasMins ? (sbyte)subMins[r * SubBlocks + s] : (sbyte)(scheme.CodeOffset * sc);
            }
            for (int b = 0; b < SuperBlocks; b++)
            {
                int at = SuperIndex(r, b);
                Half d = superScales[r * SuperBlocks + b];
                SuperScales[at] = BitConverter.HalfToUInt16Bits(d);
                if (CorrectionScales is not null)
                    CorrectionScales[at] = BitConverter.HalfToUInt16Bits(scheme.HasMins ? superMins[r * SuperBlocks + b] : d);
            }
        }
        HugePages.Collapse(Packed);
        HugePages.Collapse(SubScales);
        HugePages.Collapse(SuperScales);
        if (Corrections is not null) HugePages.Collapse(Corrections);
        if (CorrectionScales is not null) HugePages.Collapse(CorrectionScales);
    }

    /// <summary>The stored code (0..15) of element (r, c).</summary>
    public int Code(int r, int c)
    {
        CheckElement(r, c);
        byte pair = Packed[ChunkOffset(r, c / ChunkColumns) + c % 4];
        return c % ChunkColumns < 4 ? pair & 0xF : pair >> 4;
    }

    /// <summary>The integer scale sc of sub-block s of row r.</summary>
    public int SubScale(int r, int s)
    {
        CheckRow(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)s, (uint)SubBlocks, nameof(s));
        return SubScales[SubScaleIndex(r, s)];
    }

    /// <summary>The integer minimum m of sub-block s of row r (0 when the scheme has none).</summary>
    public int SubMin(int r, int s)
    {
        CheckRow(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)s, (uint)SubBlocks, nameof(s));
        return Scheme.HasMins ? Corrections![CorrectionIndex(r, s)] : 0;
    }

    /// <summary>The scale d of super-block b of row r.</summary>
    public Half SuperScale(int r, int b)
    {
        CheckRow(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)b, (uint)SuperBlocks, nameof(b));
        return BitConverter.UInt16BitsToHalf(SuperScales[SuperIndex(r, b)]);
    }

    /// <summary>The minimum dmin of super-block b of row r (0 when the scheme has none).</summary>
    public Half SuperMin(int r, int b)
    {
        CheckRow(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)b, (uint)SuperBlocks, nameof(b));
        return Scheme.HasMins ? BitConverter.UInt16BitsToHalf(CorrectionScales![SuperIndex(r, b)]) : default;
    }

    /// <summary>The kernels' correction c of sub-block s of row r: m with minimums, <c>CodeOffset · sc</c> with a code offset, else 0.</summary>
    internal int KernelCorrection(int r, int s) => Corrections is null ? 0 : Corrections[CorrectionIndex(r, s)];

    /// <summary>The kernels' correction scale e of super-block b of row r: dmin with minimums, d with a code offset, else 0.</summary>
    internal float KernelCorrectionScale(int r, int b) => CorrectionScales is null ? 0f : (float)BitConverter.UInt16BitsToHalf(CorrectionScales[SuperIndex(r, b)]);

    /// <summary>
    /// The weight <c>(d · sc) · v(q) − dmin · m</c> of element (r, c), rounded to float after each product and the
    /// difference, as ggml's reference dequantizers round it (without minimums the difference is with +0: the same value).
    /// </summary>
    public float Dequantize(int r, int c)
    {
        int s = c / Scheme.SubBlockSize, b = c / Scheme.SuperBlockSize;
        float scale = (float)SuperScale(r, b) * SubScale(r, s);
        float min = (float)SuperMin(r, b) * SubMin(r, s);
        return scale * Scheme.Value(Code(r, c)) - min;
    }

    /// <summary>Byte offset in <see cref="Packed"/> of chunk k of row r (row r's 4 bytes).</summary>
    internal long ChunkOffset(int r, int k) =>
        ((long)(r / PairRows) * Chunks + k) * ChunkStride + (r / BlockRows & 1) * 32 + r % BlockRows * 4;

    /// <summary>Index in <see cref="SubScales"/> of row r, sub-block s.</summary>
    internal int SubScaleIndex(int r, int s) => (r / PairRows * SubBlocks + s) * PairRows + r % PairRows;

    /// <summary>Index in <see cref="SuperScales"/> (and <see cref="CorrectionScales"/>) of row r, super-block b.</summary>
    internal int SuperIndex(int r, int b) => (r / PairRows * SuperBlocks + b) * PairRows + r % PairRows;

    /// <summary>Index in <see cref="Corrections"/> of row r, sub-block s.</summary>
    internal int CorrectionIndex(int r, int s)
    {
        int perSuper = Scheme.SubBlocksPerSuperBlock, b = s / perSuper, within = s % perSuper;
        return (((r / PairRows * SuperBlocks + b) * CorrectionPairs + within / 2) * PairRows + r % PairRows) * 2 + within % 2;
    }

    private void CheckRow(int r) => ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)r, (uint)Rows, nameof(r));

    private void CheckElement(int r, int c)
    {
        CheckRow(r);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)c, (uint)Cols, nameof(c));
    }
}
