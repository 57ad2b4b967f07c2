using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Pointers and shape of one grouped-W8 kernel call over <see cref="GroupedInt8RowBlocks"/>, shared by the tiles and the
/// single-token stream of <see cref="Avx2.Avx2GroupedInt8Kernel"/> and the GEMM of <see cref="Avx512.Avx512GroupedInt8Kernel"/>.
/// </summary>
internal readonly unsafe struct GroupedInt8KernelCall(GroupedInt8RowBlocks blocks, sbyte* weights, byte* scaleEntries, float* superScales,
    byte* offsetEntries, float* superOffsets, sbyte* codes, int codeStride, float* groupSums, float* groupScales, int groupSumCount, float* tokenScales, float* y)
{
    /// <summary>Interleaved weight codes (blocks, chunks, 32): <see cref="GroupedInt8RowBlocks.Codes"/>.</summary>
    public readonly sbyte* Weights = weights;

    /// <summary>Scale entries (blocks, groups, 8) in <see cref="Encoding"/>.</summary>
    public readonly byte* ScaleEntries = scaleEntries;

    /// <summary>Super-block scales (blocks, super-blocks, 8); unused unless <see cref="GroupScaleEncoding.SuperBlock"/>.</summary>
    public readonly float* SuperScales = superScales;

    /// <summary>Offset entries, shaped as the scale entries; unused without offsets.</summary>
    public readonly byte* OffsetEntries = offsetEntries;

    /// <summary>Super-block offsets; unused without offsets or super-blocks.</summary>
    public readonly float* SuperOffsets = superOffsets;

    /// <summary>Activation codes (tokens, CodeStride), plain order, zero padded.</summary>
    public readonly sbyte* Codes = codes;

    /// <summary>Σ codes per (token, group) as floats, (tokens, GroupSumCount), one group per weight group; read only with offsets.</summary>
    public readonly float* GroupSums = groupSums;

    /// <summary>Activation scale s_x,g per (token, group), shaped as <see cref="GroupSums"/>; all 1 with per-token scales.</summary>
    public readonly float* GroupScales = groupScales;

    /// <summary>Activation scale s_x per token (1 with group scales).</summary>
    public readonly float* TokenScales = tokenScales;

    /// <summary>Output (tokens, Rows).</summary>
    public readonly float* Y = y;

    /// <summary>Codes per token row.</summary>
    public readonly int CodeStride = codeStride;

    /// <summary>Activation group sums per token.</summary>
    public readonly int GroupSumCount = groupSumCount;

    /// <summary>4-column chunks per row (whole groups).</summary>
    public readonly int Chunks = blocks.Chunks;

    /// <summary>Groups per row.</summary>
    public readonly int Groups = blocks.GroupCount;

    /// <summary>Super-blocks per row.</summary>
    public readonly int SuperBlocks = blocks.SuperBlockCount;

    /// <summary>A group's super-block is <c>g &gt;&gt; SuperBlockShift</c>.</summary>
    public readonly int SuperBlockShift = blocks.SuperBlockShift;

    /// <summary>How the scale and offset entries are stored.</summary>
    public readonly GroupScaleEncoding Encoding = blocks.Encoding;

    /// <summary>Whether the groups have offsets.</summary>
    public readonly bool HasOffsets = blocks.HasOffsets;

    /// <summary>Columns per group: 16 or 32.</summary>
    public readonly int GroupSize = blocks.GroupSize;

    /// <summary>Rows of the matrix.</summary>
    public readonly int Rows = blocks.Rows;
}
