namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// The x86 kernels' copy of a <see cref="PackedInt4Matrix"/>, repacked once at load so that one 32-byte
/// load holds 8 output rows × 8 columns and one broadcast activation feeds all 8 rows:
/// <c>W[r, c] = Scale(r, g) · (nibble(r, c) − z(r, g))</c> exactly as in the source matrix.
/// </summary>
/// <remarks>
/// Rows are taken in blocks of <see cref="BlockRows"/> = 8 (the last block padded with zero rows), columns in
/// chunks of 8 (the last chunk padded with zero nibbles, which meet zero activations). Row block b, chunk k
/// is the 32 bytes at <c>(b · Chunks + k) · 32</c>:
/// <code>
///  byte:   0    1    2    3  |  4    5    6    7  | ... | 28   29   30   31
///  row:    r0   r0   r0   r0 |  r1   r1   r1   r1 | ... | r7   r7   r7   r7        (ri = 8b + i)
///  low:    c0   c1   c2   c3 |  c0   c1   c2   c3 | ... | c0   c1   c2   c3        (cj = 8k + j)
///  high:   c4   c5   c6   c7 |  c4   c5   c6   c7 | ... | c4   c5   c6   c7
/// </code>
/// So <c>packed &amp; 0x0F</c> gives, per row, columns 8k..8k+3 in the 4 bytes of one int32 lane, and
/// <c>(packed &gt;&gt; 4) &amp; 0x0F</c> columns 8k+4..8k+7: multiplied (<c>vpmaddubsw</c>) by the broadcast int32 of
/// activation bytes 8k..8k+3 (resp. 8k+4..8k+7) in plain column order, every int32 lane then belongs to one row,
/// so the 8 lanes are the 8 rows' partial sums and no horizontal reduction is ever needed. Scales are
/// (blocks, GroupCount, 8) floats and zero points (blocks, GroupCount, 8) bytes, so one load gives a group's
/// values for the block's 8 rows; padding rows have scale 0 and zero point 0.
/// </remarks>
internal sealed class Int4RowBlocks
{
    /// <summary>Output rows interleaved per block (one int32 lane each in a 256-bit vector).</summary>
    public const int BlockRows = 8;

    /// <summary>Columns per 32-byte chunk (4 per nibble half).</summary>
    public const int ChunkColumns = 8;

    /// <summary>Repacks <paramref name="source"/>.</summary>
    public Int4RowBlocks(PackedInt4Matrix source)
    {
        Rows = source.Rows;
        Cols = source.Cols;
        GroupCount = source.GroupCount;
        Blocks = (Rows + BlockRows - 1) / BlockRows;
        Chunks = (Cols + ChunkColumns - 1) / ChunkColumns;
        Packed = GC.AllocateUninitializedArray<byte>(checked(Blocks * Chunks * 32), pinned: true);
        Scales = GC.AllocateArray<float>(Blocks * GroupCount * BlockRows, pinned: true);
        ZeroPoints = source.IsSymmetric ? null : GC.AllocateArray<byte>(Blocks * GroupCount * BlockRows, pinned: true);
        Span<byte> nibbles = stackalloc byte[ChunkColumns];
        byte[] rowMajor = source.PackedArray;
        int rowBytes = source.RowBytes;
        for (int b = 0; b < Blocks; b++)
            for (int i = 0; i < BlockRows; i++)
            {
                int r = b * BlockRows + i;
                for (int k = 0; k < Chunks; k++)
                {
                    for (int j = 0; j < ChunkColumns; j++)
                    {
                        int c = k * ChunkColumns + j;
                        nibbles[j] = (byte)(r < Rows && c < Cols ? rowMajor[(long)r * rowBytes + c / 2] >> (c & 1) * 4 & 0xF : 0);
                    }
                    long at = ((long)b * Chunks + k) * 32 + i * 4;
                    for (int j = 0; j < 4; j++) Packed[at + j] = (byte)(nibbles[j] | nibbles[j + 4] << 4);
                }
                if (r >= Rows) continue;
                for (int g = 0; g < GroupCount; g++)
                {
                    int at = (b * GroupCount + g) * BlockRows + i;
                    Scales[at] = source.Scale(r, g);
                    if (ZeroPoints is not null) ZeroPoints[at] = (byte)source.ZeroPoint(r, g);
                }
            }
        HalfScales = HalfCopy(Scales);
    }

    /// <summary>Rows of the source matrix.</summary>
    public int Rows { get; }

    /// <summary>Columns of the source matrix.</summary>
    public int Cols { get; }

    /// <summary>Scale groups per row.</summary>
    public int GroupCount { get; }

    /// <summary>Row blocks: <c>ceil(Rows / 8)</c>.</summary>
    public int Blocks { get; }

    /// <summary>8-column chunks per row: <c>ceil(Cols / 8)</c>.</summary>
    public int Chunks { get; }

    /// <summary>Interleaved nibbles (Blocks, Chunks, 32 bytes); see the class remarks.</summary>
    public byte[] Packed { get; }

    /// <summary>Scales (Blocks, GroupCount, 8).</summary>
    public float[] Scales { get; }

    /// <summary>
    /// <see cref="Scales"/> (Blocks, GroupCount, 8) as IEEE half bits, for the decode stream, when every scale is a finite
    /// half exactly (so both copies hold the same values; GGUF Q4_0 scales are FP16); otherwise null.
    /// </summary>
    public ushort[]? HalfScales { get; }

    /// <summary>Zero points (Blocks, GroupCount, 8), or null for symmetric codes (zero point 8).</summary>
    public byte[]? ZeroPoints { get; }

    // halves[i] = bits(Half(scales[i])) when every scale survives the round trip float → half → float exactly; else null.
    private static ushort[]? HalfCopy(float[] scales)
    {
        var halves = GC.AllocateUninitializedArray<ushort>(scales.Length, pinned: true);
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
        byte pair = Packed[((long)b * Chunks + k) * 32 + r % BlockRows * 4 + j % 4];
        return j < 4 ? pair & 0xF : pair >> 4;
    }
}
