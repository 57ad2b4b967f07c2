using System.Runtime.InteropServices;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>How <see cref="GroupedInt8RowBlocks"/> stores the group scales (and offsets): the most compact exact form.</summary>
internal enum GroupScaleEncoding
{
    /// <summary>A float per (row, group): 4 bytes.</summary>
    Single,

    /// <summary>An IEEE half per (row, group), used when every scale and offset is a finite half exactly (GGUF Q8_0, Q5_0, Q5_1): 2 bytes.</summary>
    Half,

    /// <summary>An int8 sub-scale per (row, group) times a float per (row, super-block), as the k-quants store them: 1 byte + 4 per super-block.</summary>
    SuperBlock,
}

/// <summary>
/// The x86 and AdvSimd kernels' copy of a <see cref="GroupedInt8Matrix"/>, repacked once at load: codes in the 8-row × 4-column
/// chunks of <see cref="Int8RowBlocks"/> (one 32-byte load holds 8 output rows × 4 codes, and a broadcast int32 of 4
/// activation codes feeds all 8 rows), each row's groups padded to whole groups, and the group scales and offsets
/// interleaved per 8 rows in the most compact exact <see cref="GroupScaleEncoding"/>, so that one load gives a group's
/// factors for a block's 8 rows: <c>W[r, c] = Scale(r, g) · Code(r, c) − Offset(r, g)</c> exactly as in the source.
/// </summary>
/// <remarks>
/// Row block b, chunk k (columns 4k..4k+3) is the 32 bytes at <c>(b · Chunks + k) · 32</c>, row i's 4 codes at bytes
/// 4i..4i+3 (the <see cref="Int8RowBlocks"/> layout); Chunks = GroupCount · GroupSize / 4, zero past Cols. Scale entries
/// are (Blocks, GroupCount, 8) of <see cref="EntryBytes"/> each (floats, halves or int8 sub-scales), super-block
/// scales (Blocks, SuperBlockCount, 8) floats; offsets likewise. Padding rows have zero codes, scales and offsets.
/// </remarks>
internal sealed class GroupedInt8RowBlocks
{
    /// <summary>Output rows interleaved per block.</summary>
    public const int BlockRows = 8;

    /// <summary>Columns per chunk (one int32 lane of 4 codes per row).</summary>
    public const int ChunkColumns = 4;

    /// <summary>Repacks <paramref name="source"/>, whose row-major codes are <paramref name="rowMajor"/> (Rows, RowStride).</summary>
    /// <param name="source">The matrix.</param>
    /// <param name="rowMajor">Its row-major codes.</param>
    /// <param name="halfScales">Whether <see cref="GroupScaleEncoding.Half"/> may be chosen (false for the AdvSimd kernel, which has no half-to-float convert in .NET).</param>
    public GroupedInt8RowBlocks(GroupedInt8Matrix source, sbyte[] rowMajor, bool halfScales = true)
    {
        Rows = source.Rows;
        Cols = source.Cols;
        GroupSize = source.GroupSize;
        GroupCount = source.GroupCount;
        SuperBlockCount = source.SuperBlockCount;
        SuperBlockShift = source.SuperBlockShift;
        HasOffsets = source.HasOffsets;
        Blocks = (Rows + BlockRows - 1) / BlockRows;
        Chunks = GroupCount * (GroupSize / ChunkColumns);
        int stride = source.RowStride;
        Codes = HugePages.AllocatePinned<sbyte>(checked(Blocks * Chunks * 32), zeroed: true);
        RepackCodes(rowMajor, stride);
        HugePages.Collapse(Codes);
        HasMinimumCode = Codes.AsSpan().Contains(sbyte.MinValue);

        Encoding = source.HasSuperBlockScales ? GroupScaleEncoding.SuperBlock
            : halfScales && AllHalves(source.ScaleArray) && (source.OffsetArray is null || AllHalves(source.OffsetArray)) ? GroupScaleEncoding.Half
            : GroupScaleEncoding.Single;
        EntryBytes = Encoding switch { GroupScaleEncoding.Single => sizeof(float), GroupScaleEncoding.Half => 2, _ => 1 };
        (ScaleEntries, SuperScales) = Interleave(source, source.ScaleArray, source.SubScaleArray);
        if (HasOffsets) (OffsetEntries, SuperOffsets) = Interleave(source, source.OffsetArray!, source.SubOffsetArray);
    }

    // Codes[(b · Chunks + k) · 32 + 4i ..+4] ← rowMajor[r · stride + 4k ..+4] (r = 8b + i), for the columns < Cols: whole
    // chunks as one 32-bit word each, a last partial chunk code by code; the row blocks split across the load's threads
    private void RepackCodes(sbyte[] rowMajor, int stride)
    {
        int wholeChunks = Cols / ChunkColumns, rows = Rows, cols = Cols, chunks = Chunks;
        sbyte[] codes = Codes;
        int[] bounds = RangeBounds(Blocks);
        Parallel.For(0, bounds.Length - 1, part =>
        {
            Span<int> target = MemoryMarshal.Cast<sbyte, int>(codes.AsSpan()); // (Blocks, Chunks, 8) words
            for (int b = bounds[part]; b < bounds[part + 1]; b++)
                for (int i = 0; i < BlockRows && b * BlockRows + i < rows; i++)
                {
                    int r = b * BlockRows + i;
                    ReadOnlySpan<int> words = MemoryMarshal.Cast<sbyte, int>(rowMajor.AsSpan(r * stride, wholeChunks * ChunkColumns));
                    int at = b * chunks * BlockRows + i; // word of chunk k of row i: at + 8k
                    for (int k = 0; k < words.Length; k++) target[at + k * BlockRows] = words[k];
                    for (int c = wholeChunks * ChunkColumns; c < cols; c++)
                        codes[((long)b * chunks + c / ChunkColumns) * 32 + i * 4 + c % ChunkColumns] = rowMajor[r * stride + c];
                }
        });
    }

    // boundaries of up to ProcessorCount contiguous ranges of [0, count)
    private static int[] RangeBounds(int count)
    {
        int parts = Math.Max(1, Math.Min(Environment.ProcessorCount, count));
        return Enumerable.Range(0, parts + 1).Select(p => (int)((long)count * p / parts)).ToArray();
    }

    /// <summary>Rows of the source matrix.</summary>
    public int Rows { get; }

    /// <summary>Columns of the source matrix.</summary>
    public int Cols { get; }

    /// <summary>Input columns per group: 16 or 32.</summary>
    public int GroupSize { get; }

    /// <summary>Groups per row.</summary>
    public int GroupCount { get; }

    /// <summary>Super-blocks per row (<see cref="GroupScaleEncoding.SuperBlock"/>).</summary>
    public int SuperBlockCount { get; }

    /// <summary>A group's super-block is <c>g &gt;&gt; SuperBlockShift</c>.</summary>
    public int SuperBlockShift { get; }

    /// <summary>Row blocks: <c>ceil(Rows / 8)</c>.</summary>
    public int Blocks { get; }

    /// <summary>4-column chunks per row: whole groups, <c>GroupCount · GroupSize / 4</c>.</summary>
    public int Chunks { get; }

    /// <summary>Whether the groups have offsets.</summary>
    public bool HasOffsets { get; }

    /// <summary>Whether any code is −128, whose negation does not fit a signed byte (kernels that flip weight signs skip such matrices).</summary>
    public bool HasMinimumCode { get; }

    /// <summary>How the scale and offset entries are stored.</summary>
    public GroupScaleEncoding Encoding { get; }

    /// <summary>Bytes per scale entry: 4 (float), 2 (half) or 1 (int8 sub-scale).</summary>
    public int EntryBytes { get; }

    /// <summary>Interleaved codes (Blocks, Chunks, 32); see the class remarks.</summary>
    public sbyte[] Codes { get; }

    /// <summary>Scale entries (Blocks, GroupCount, 8) of <see cref="EntryBytes"/> each.</summary>
    public byte[] ScaleEntries { get; }

    /// <summary>Super-block scales (Blocks, SuperBlockCount, 8); empty unless <see cref="GroupScaleEncoding.SuperBlock"/>.</summary>
    public float[] SuperScales { get; }

    /// <summary>Offset entries, shaped as <see cref="ScaleEntries"/>; empty without offsets.</summary>
    public byte[] OffsetEntries { get; } = [];

    /// <summary>Super-block offsets, shaped as <see cref="SuperScales"/>; empty without offsets or super-blocks.</summary>
    public float[] SuperOffsets { get; } = [];

    /// <summary>The row-major codes (Rows, stride), rebuilt from the blocks.</summary>
    public sbyte[] ToRowMajor(int stride)
    {
        var codes = new sbyte[(long)Rows * stride];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Cols; c++) codes[(long)r * stride + c] = (sbyte)Code(r, c);
        return codes;
    }

    /// <summary>The code of (r, c) read back from the interleaved layout.</summary>
    public int Code(int r, int c) => Codes[((long)(r / BlockRows) * Chunks + c / ChunkColumns) * 32 + r % BlockRows * 4 + c % ChunkColumns];

    // (entries (Blocks, GroupCount, 8), supers (Blocks, SuperBlockCount, 8)) of one factor (scales or offsets) in this Encoding
    private (byte[] Entries, float[] Supers) Interleave(GroupedInt8Matrix source, float[] values, sbyte[]? sub)
    {
        byte[] entries = HugePages.AllocatePinned<byte>(checked(Blocks * GroupCount * BlockRows * EntryBytes), zeroed: true);
        float[] supers = sub is null ? [] : HugePages.AllocatePinned<float>(Blocks * SuperBlockCount * BlockRows, zeroed: true);
        Span<float> floats = MemoryMarshal.Cast<byte, float>(entries.AsSpan());
        Span<Half> halves = MemoryMarshal.Cast<byte, Half>(entries.AsSpan());
        for (int r = 0; r < Rows; r++)
        {
            int b = r / BlockRows, i = r % BlockRows;
            for (int g = 0; g < GroupCount; g++)
            {
                long at = ((long)b * GroupCount + g) * BlockRows + i;
                switch (Encoding)
                {
                    case GroupScaleEncoding.Single: floats[(int)at] = values[(long)r * GroupCount + g]; break;
                    case GroupScaleEncoding.Half: halves[(int)at] = (Half)values[(long)r * GroupCount + g]; break;
                    default: entries[at] = (byte)sub![(long)r * GroupCount + g]; break;
                }
            }
            if (sub is null) continue;
            for (int s = 0; s < SuperBlockCount; s++) supers[((long)b * SuperBlockCount + s) * BlockRows + i] = values[(long)r * SuperBlockCount + s];
        }
        return (entries, supers);
    }

    /// <summary>
    /// The source's float scales (or, with <paramref name="offsets"/>, offsets) row-major again: per group (Rows, GroupCount),
    /// or per super-block (Rows, SuperBlockCount) with <see cref="GroupScaleEncoding.SuperBlock"/>; the inverse of
    /// <see cref="Interleave"/>, exact for every encoding (halves are used only where every value is one exactly).
    /// </summary>
    public float[] RowMajorFactors(bool offsets)
    {
        byte[] entries = offsets ? OffsetEntries : ScaleEntries;
        float[] supers = offsets ? SuperOffsets : SuperScales;
        bool super = Encoding == GroupScaleEncoding.SuperBlock;
        int perRow = super ? SuperBlockCount : GroupCount;
        var values = new float[(long)Rows * perRow];
        ReadOnlySpan<float> floats = MemoryMarshal.Cast<byte, float>(entries.AsSpan());
        ReadOnlySpan<Half> halves = MemoryMarshal.Cast<byte, Half>(entries.AsSpan());
        for (int r = 0; r < Rows; r++)
        {
            int b = r / BlockRows, i = r % BlockRows;
            for (int g = 0; g < perRow; g++)
            {
                int at = (int)(((long)b * perRow + g) * BlockRows + i);
                values[(long)r * perRow + g] = super ? supers[at] : Encoding == GroupScaleEncoding.Half ? (float)halves[at] : floats[at];
            }
        }
        return values;
    }

    // every value a finite half exactly (the half copy then widens to the same float)
    private static bool AllHalves(float[] values)
    {
        foreach (float v in values)
            if (!Half.IsFinite((Half)v) || (float)(Half)v != v || (v == 0 && float.IsNegative(v) != Half.IsNegative((Half)v))) return false;
        return true;
    }
}
