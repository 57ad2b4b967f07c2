using System.Buffers.Binary;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// The x86 and ARM kernels' copy of a <see cref="PackedInt4Matrix"/>, repacked once at load so that one 32-byte
/// load holds 8 output rows × 8 columns and one broadcast activation feeds all 8 rows:
/// <c>W[r, c] = Scale(r, g) · (nibble(r, c) − z(r, g))</c> exactly as in the source matrix.
/// </summary>
/// <remarks>
/// Rows are taken in blocks of <see cref="BlockRows"/> = 8 (the last block padded with zero rows), columns in
/// chunks of 8 (the last chunk padded with zero nibbles, which meet zero activations). Blocks are stored in pairs
/// (2p, 2p + 1), an odd count padded with a zero block: chunk k of the pair is 64 bytes, block 2p's 32 then block
/// 2p + 1's, so row block b, chunk k is the 32 bytes at <c><see cref="BlockOffset(int)"/>(b) + k · <see cref="ChunkStride"/></c>:
/// <code>
///  byte:   0    1    2    3  |  4    5    6    7  | ... | 28   29   30   31  | 32 ... 63
///  row:    r0   r0   r0   r0 |  r1   r1   r1   r1 | ... | r7   r7   r7   r7  | the same for block 2p + 1
///  low:    c0   c1   c2   c3 |  c0   c1   c2   c3 | ... | c0   c1   c2   c3        (ri = 8 · 2p + i, cj = 8k + j)
///  high:   c4   c5   c6   c7 |  c4   c5   c6   c7 | ... | c4   c5   c6   c7
/// </code>
/// So <c>packed &amp; 0x0F</c> gives, per row, columns 8k..8k+3 in the 4 bytes of one int32 lane, and
/// <c>(packed &gt;&gt; 4) &amp; 0x0F</c> columns 8k+4..8k+7: multiplied (<c>vpmaddubsw</c>) by the broadcast int32 of
/// activation bytes 8k..8k+3 (resp. 8k+4..8k+7) in plain column order, every int32 lane then belongs to one row,
/// so the 8 lanes are the 8 rows' partial sums and no horizontal reduction is ever needed. Scales are
/// (pairs, GroupCount, 16) floats and zero points (pairs, GroupCount, 16) bytes, the 8 of block 2p then the 8 of
/// 2p + 1, so one load gives a group's values for a block's 8 rows (or a pair's 16); padding rows have scale 0
/// and zero point 0.
/// Why pairs: the one-token stream of <see cref="Avx512.Avx512Int4Gemv"/> reads a pair per zmm; with the blocks
/// one after the other it ran two weight streams 44 KB apart (4096 × 11008) plus four scale and zero-point streams
/// per core, and took a 256-bit load and an insert per chunk. Interleaved, each core reads one weight stream in
/// whole 64-byte lines with one load, which streamed faster on one core and on two (docs/kernels.md, "Decode stream").
/// </remarks>
internal sealed class Int4RowBlocks
{
    /// <summary>Output rows interleaved per block (one int32 lane each in a 256-bit vector).</summary>
    public const int BlockRows = 8;

    /// <summary>Columns per 32-byte chunk (4 per nibble half).</summary>
    public const int ChunkColumns = 8;

    /// <summary>Bytes from chunk k to chunk k + 1 of one block: a pair's two 32-byte chunks sit side by side.</summary>
    public const int ChunkStride = 64;

    /// <summary>Entries (scales or zero points) from group g to g + 1 of one block: a pair's 8 + 8.</summary>
    public const int GroupStride = 2 * BlockRows;

    /// <summary>
    /// Repacks <paramref name="source"/>; with <paramref name="keepFloatScales"/> false, the float <see cref="Scales"/> are
    /// dropped when the exact <see cref="HalfScales"/> exist (kernels whose every path reads the halves: the x86 ones);
    /// with <paramref name="halfScales"/> false no half copy is made (the floats alone, as for scales no half holds).
    /// </summary>
    public Int4RowBlocks(PackedInt4Matrix source, bool keepFloatScales = true, bool halfScales = true)
    {
        Rows = source.Rows;
        Cols = source.Cols;
        GroupCount = source.GroupCount;
        Blocks = (Rows + BlockRows - 1) / BlockRows;
        Chunks = (Cols + ChunkColumns - 1) / ChunkColumns;
        Pairs = (Blocks + 1) / 2;
        Packed = HugePages.AllocatePinned<byte>(checked(Pairs * Chunks * ChunkStride), zeroed: false);
        Scales = HugePages.AllocatePinned<float>(Pairs * GroupCount * GroupStride, zeroed: true);
        ZeroPoints = source.IsSymmetric ? null : HugePages.AllocatePinned<byte>(Pairs * GroupCount * GroupStride, zeroed: true);
        byte[] rowMajor = source.PackedArray;
        // the padding block of an odd count too (its nibbles are written as zeros); pairs split across the load's threads
        int parts = Math.Max(1, Math.Min(Environment.ProcessorCount, Pairs));
        Parallel.For(0, parts, p => RepackBlocks(source, rowMajor, 2 * (int)((long)Pairs * p / parts), 2 * (int)((long)Pairs * (p + 1) / parts)));
        HalfScales = halfScales ? HalfCopy(Scales) : null;
        if (HalfScales is not null && !keepFloatScales) Scales = null; // the halves hold every value exactly
        HugePages.Collapse(Packed);
        if (Scales is not null) HugePages.Collapse(Scales);
        if (ZeroPoints is not null) HugePages.Collapse(ZeroPoints);
        if (HalfScales is not null) HugePages.Collapse(HalfScales);
    }

    // row blocks [firstBlock, endBlock) of the source's row-major nibbles, scales and zero points → Packed, Scales, ZeroPoints
    private void RepackBlocks(PackedInt4Matrix source, byte[] rowMajor, int firstBlock, int endBlock)
    {
        Span<byte> nibbles = stackalloc byte[ChunkColumns];
        int rowBytes = source.RowBytes;
        for (int b = firstBlock; b < endBlock; b++)
            for (int i = 0; i < BlockRows; i++)
            {
                int r = b * BlockRows + i;
                // chunks whose 8 columns all lie inside the matrix: the row-major source holds them as one 32-bit word
                int wholeChunks = r < Rows ? Cols / ChunkColumns : 0;
                if (wholeChunks > 0) RepackWholeChunks(rowMajor, (long)r * rowBytes, BlockOffset(b) + i * 4, wholeChunks);
                for (int k = wholeChunks; k < Chunks; k++)
                {
                    for (int j = 0; j < ChunkColumns; j++)
                    {
                        int c = k * ChunkColumns + j;
                        nibbles[j] = (byte)(r < Rows && c < Cols ? rowMajor[(long)r * rowBytes + c / 2] >> (c & 1) * 4 & 0xF : 0);
                    }
                    long at = BlockOffset(b) + (long)k * ChunkStride + i * 4;
                    for (int j = 0; j < 4; j++) Packed[at + j] = (byte)(nibbles[j] | nibbles[j + 4] << 4);
                }
                if (r >= Rows) continue;
                for (int g = 0; g < GroupCount; g++)
                {
                    int at = ScaleIndex(r, g);
                    Scales![at] = source.Scale(r, g);
                    if (ZeroPoints is not null) ZeroPoints[at] = (byte)source.ZeroPoint(r, g);
                }
            }
    }

    // Packed[target + k · ChunkStride ..+4] ← PairNibbles(the 4 source bytes at rowMajor[source + 4k]) for k < chunks
    private unsafe void RepackWholeChunks(byte[] rowMajor, long source, long target, int chunks)
    {
        fixed (byte* from = &rowMajor[source], to = &Packed[target])
            for (int k = 0; k < chunks; k++)
            {
                uint word = BitConverter.IsLittleEndian ? *(uint*)(from + 4 * k) : BinaryPrimitives.ReverseEndianness(*(uint*)(from + 4 * k));
                uint paired = PairNibbles(word);
                *(uint*)(to + (nint)k * ChunkStride) = BitConverter.IsLittleEndian ? paired : BinaryPrimitives.ReverseEndianness(paired);
            }
    }

    // word nibbles c0 c1 c2 c3 c4 c5 c6 c7 (nibble i at bits 4i, the row-major order) → bytes (c0|c4<<4, c1|c5<<4, c2|c6<<4, c3|c7<<4)
    internal static uint PairNibbles(uint word) => SpreadNibbles(word & 0xFFFF) | SpreadNibbles(word >> 16) << 4;

    // the 4 nibbles of a 16-bit value to nibbles 0, 2, 4, 6 of 32 bits
    private static uint SpreadNibbles(uint x)
    {
        x = (x | x << 8) & 0x00FF00FF;
        return (x | x << 4) & 0x0F0F0F0F;
    }

    /// <summary>Rows of the source matrix.</summary>
    public int Rows { get; }

    /// <summary>Columns of the source matrix.</summary>
    public int Cols { get; }

    /// <summary>Scale groups per row.</summary>
    public int GroupCount { get; }

    /// <summary>Row blocks: <c>ceil(Rows / 8)</c>.</summary>
    public int Blocks { get; }

    /// <summary>Stored block pairs: <c>ceil(Blocks / 2)</c>.</summary>
    public int Pairs { get; }

    /// <summary>8-column chunks per row: <c>ceil(Cols / 8)</c>.</summary>
    public int Chunks { get; }

    /// <summary>Interleaved nibbles (Pairs, Chunks, 2 blocks, 32 bytes); see the class remarks.</summary>
    public byte[] Packed { get; }

    /// <summary>
    /// Scales (Pairs, GroupCount, 2 blocks, 8 rows); null when only <see cref="HalfScales"/> are kept (every scale is a
    /// half exactly and the kernels read the halves: 4 bytes per 32 weights less).
    /// </summary>
    public float[]? Scales { get; }

    /// <summary>
    /// The scales (Pairs, GroupCount, 2, 8) as IEEE half bits when every scale is a finite half exactly (GGUF Q4_0 scales
    /// are FP16), so they hold the same values as <see cref="Scales"/>; otherwise null. The x86 kernels read these
    /// whenever they exist (the decode stream and the GEMM tiles), widened exactly.
    /// </summary>
    public ushort[]? HalfScales { get; }

    /// <summary>The scale at <paramref name="index"/> (<see cref="ScaleIndex"/>), from whichever copy is kept.</summary>
    public float ScaleAt(int index) => Scales is { } scales ? scales[index] : (float)BitConverter.UInt16BitsToHalf(HalfScales![index]);

    /// <summary>Zero points (Pairs, GroupCount, 2, 8), or null for symmetric codes (zero point 8).</summary>
    public byte[]? ZeroPoints { get; }

    /// <summary>Byte offset in <see cref="Packed"/> of chunk 0 of row block <paramref name="b"/>.</summary>
    public long BlockOffset(int b) => BlockOffset(b, Chunks);

    /// <summary>Byte offset of chunk 0 of row block <paramref name="b"/> in the packed nibbles of a matrix of <paramref name="chunks"/> chunks per row.</summary>
    public static long BlockOffset(int b, int chunks) => (long)(b >> 1) * chunks * ChunkStride + (b & 1) * 32;

    /// <summary>Index in <see cref="Scales"/> (and <see cref="ZeroPoints"/>) of group 0, row 0 of row block <paramref name="b"/>.</summary>
    public int BlockGroupIndex(int b) => BlockGroupIndex(b, GroupCount);

    /// <summary>Index of group 0, row 0 of row block <paramref name="b"/> in the scales (zero points) of a matrix of <paramref name="groups"/> groups per row.</summary>
    public static int BlockGroupIndex(int b, int groups) => (b >> 1) * groups * GroupStride + (b & 1) * BlockRows;

    /// <summary>Index in <see cref="Scales"/> (and <see cref="ZeroPoints"/>) of row <paramref name="r"/>, group <paramref name="g"/>.</summary>
    public int ScaleIndex(int r, int g) => BlockGroupIndex(r / BlockRows) + g * GroupStride + r % BlockRows;

    // halves[i] = bits(Half(scales[i])) when every scale survives the round trip float → half → float exactly; else null.
    private static ushort[]? HalfCopy(float[] scales)
    {
        var halves = HugePages.AllocatePinned<ushort>(scales.Length, zeroed: false);
        for (int i = 0; i < scales.Length; i++)
        {
            Half half = (Half)scales[i];
            if (!Half.IsFinite(half) || (float)half != scales[i]) return null;
            halves[i] = BitConverter.HalfToUInt16Bits(half);
        }
        return halves;
    }

    /// <summary>The row-major layout of <see cref="PackedInt4Matrix.Packed"/> (Rows, rowBytes), rebuilt from the blocks.</summary>
    public byte[] ToRowMajor(int rowBytes)
    {
        var packed = new byte[(long)Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Cols; c++) packed[(long)r * rowBytes + c / 2] |= (byte)(Nibble(r, c) << (c & 1) * 4);
        return packed;
    }

    /// <summary>The nibble of (r, c) read back from the interleaved layout.</summary>
    public int Nibble(int r, int c)
    {
        int b = r / BlockRows, k = c / ChunkColumns, j = c % ChunkColumns;
        byte pair = Packed[BlockOffset(b) + (long)k * ChunkStride + r % BlockRows * 4 + j % 4];
        return j < 4 ? pair & 0xF : pair >> 4;
    }
}
