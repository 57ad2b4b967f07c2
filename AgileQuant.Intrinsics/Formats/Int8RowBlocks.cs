namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// The x86 kernels' copy of an <see cref="Int8RowMatrix"/>, repacked once at load so that one 32-byte load
/// holds 8 output rows × 4 columns and one broadcast int32 of 4 activation codes feeds all 8 rows:
/// <c>W[r, c] = Scale(r) · Code(r, c)</c> exactly as in the source matrix.
/// </summary>
/// <remarks>
/// Rows in blocks of 8 (the last padded with zero rows), columns in chunks of 4 (the last padded with zero
/// codes). Row block b, chunk k is the 32 bytes at <c>(b · Chunks + k) · 32</c>:
/// <code>
///  byte:   0    1    2    3  |  4    5    6    7  | ... | 28   29   30   31
///  row:    r0   r0   r0   r0 |  r1   r1   r1   r1 | ... | r7   r7   r7   r7       (ri = 8b + i)
///  col:    c0   c1   c2   c3 |  c0   c1   c2   c3 | ... | c0   c1   c2   c3       (cj = 4k + j)
/// </code>
/// <c>vpmaddubsw</c> + <c>vpmaddwd</c> against the broadcast activation bytes 4k..4k+3 leave row i's partial
/// sum in int32 lane i. Scales are (Blocks, 8) floats, padding rows 0.
/// </remarks>
internal sealed class Int8RowBlocks
{
    /// <summary>Output rows interleaved per block.</summary>
    public const int BlockRows = 8;

    /// <summary>Columns per chunk (one int32 lane of 4 codes per row).</summary>
    public const int ChunkColumns = 4;

    /// <summary>
    /// Repacks codes (<paramref name="rows"/>, <paramref name="cols"/>), row r starting at <c>r · stride</c> of
    /// <paramref name="rowMajor"/>, with per-row <paramref name="scales"/> (rows); the caller has checked the lengths.
    /// </summary>
    public Int8RowBlocks(ReadOnlySpan<sbyte> rowMajor, int stride, ReadOnlySpan<float> scales, int rows, int cols)
    {
        Rows = rows;
        Cols = cols;
        Blocks = (Rows + BlockRows - 1) / BlockRows;
        Chunks = (Cols + ChunkColumns - 1) / ChunkColumns;
        Codes = HugePages.AllocatePinned<sbyte>(checked(Blocks * Chunks * 32), zeroed: true);
        Scales = HugePages.AllocatePinned<float>(Blocks * BlockRows, zeroed: true);
        for (int r = 0; r < Rows; r++)
        {
            int b = r / BlockRows, i = r % BlockRows;
            for (int c = 0; c < Cols; c++)
                Codes[((long)b * Chunks + c / ChunkColumns) * 32 + i * 4 + c % ChunkColumns] = rowMajor[r * stride + c];
            Scales[r] = scales[r];
        }
        HugePages.Collapse(Codes);
        HasMinimumCode = Codes.AsSpan().Contains(sbyte.MinValue);
    }

    /// <summary>Whether any code is −128, whose negation does not fit a signed byte (kernels that flip weight signs skip such matrices).</summary>
    public bool HasMinimumCode { get; }

    /// <summary>Rows of the source matrix.</summary>
    public int Rows { get; }

    /// <summary>Columns of the source matrix.</summary>
    public int Cols { get; }

    /// <summary>Row blocks: <c>ceil(Rows / 8)</c>.</summary>
    public int Blocks { get; }

    /// <summary>4-column chunks per row: <c>ceil(Cols / 4)</c>.</summary>
    public int Chunks { get; }

    /// <summary>Interleaved codes (Blocks, Chunks, 32); see the class remarks.</summary>
    public sbyte[] Codes { get; }

    /// <summary>Row scales (Blocks · 8), zero for padding rows.</summary>
    public float[] Scales { get; }

    /// <summary>The row-major layout of <see cref="Int8RowMatrix.Codes"/> (Rows, stride), rebuilt from the blocks.</summary>
    public sbyte[] ToRowMajor(int stride)
    {
        var codes = new sbyte[(long)Rows * stride];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Cols; c++) codes[(long)r * stride + c] = (sbyte)Code(r, c);
        return codes;
    }

    /// <summary>The code of (r, c) read back from the interleaved layout.</summary>
    public int Code(int r, int c) => Codes[((long)(r / BlockRows) * Chunks + c / ChunkColumns) * 32 + r % BlockRows * 4 + c % ChunkColumns];
}
