using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Pointers and shape of one W4 kernel call over <see cref="Int4RowBlocks"/>, shared by every tile and by the
/// single-token streams (<see cref="AdvSimd.AdvSimdInt4Kernel"/>, <see cref="Avx2.Avx2Int4Kernel"/>, <see cref="Avx2.Avx2Int4Gemv"/>, <see cref="Avx512.Avx512Int4Kernel"/>,
/// <see cref="Avx512.Avx512Int4Gemv"/>).
/// </summary>
internal readonly unsafe struct Int4KernelCall(Int4RowBlocks blocks, int groupSize, byte* packed, float* scales, byte* zeroPoints, sbyte* codes,
    int codeStride, int* segmentSums, int segmentCount, float* groupScales, float* tokenScales, float* y, ushort* halfScales = null)
{
    /// <summary>Packed nibbles (<see cref="Int4RowBlocks.Packed"/>).</summary>
    public readonly byte* Packed = packed;

    /// <summary>Float group scales (pairs, groups, 2 blocks, 8 rows): <see cref="Int4RowBlocks.Scales"/>; null where only the halves are kept.</summary>
    public readonly float* Scales = scales;

    /// <summary>
    /// The same scales as IEEE half bits (<see cref="Int4RowBlocks.HalfScales"/>), or null; the x86 paths read these when
    /// given (exact: a half widened to float is the float scale).
    /// </summary>
    public readonly ushort* HalfScales = halfScales;

    /// <summary>Zero points (pairs, groups, 2 blocks, 8 rows), or null for symmetric codes.</summary>
    public readonly byte* ZeroPoints = zeroPoints;

    /// <summary>Activation codes (tokens, CodeStride), plain order, zero padded.</summary>
    public readonly sbyte* Codes = codes;

    /// <summary>Σ codes per (token, 32-column segment), (tokens, SegmentCount).</summary>
    public readonly int* SegmentSums = segmentSums;

    /// <summary>
    /// Activation scale s_x,g per (token, segment), (tokens, SegmentCount): with per-group activation scales (groups of 32, one
    /// segment each) the groups' own, read by the <see cref="GroupActivationScales"/> paths; all 1 otherwise.
    /// </summary>
    public readonly float* GroupScales = groupScales;

    /// <summary>Activation scale s_x per token (1 with per-group activation scales).</summary>
    public readonly float* TokenScales = tokenScales;

    /// <summary>Output (tokens, Rows).</summary>
    public readonly float* Y = y;

    /// <summary>Codes per token row.</summary>
    public readonly int CodeStride = codeStride;

    /// <summary>32-column segments per token.</summary>
    public readonly int SegmentCount = segmentCount;

    /// <summary>8-column chunks per row.</summary>
    public readonly int Chunks = blocks.Chunks;

    /// <summary>Scale groups per row.</summary>
    public readonly int Groups = blocks.GroupCount;

    /// <summary>Columns per scale group (32, 64 or 128).</summary>
    public readonly int GroupSize = groupSize;

    /// <summary>log2(segments per group): the group of segment s is <c>s &gt;&gt; GroupShift</c>.</summary>
    public readonly int GroupShift = System.Numerics.BitOperations.Log2((uint)(groupSize / 32));

    /// <summary>Rows of the matrix.</summary>
    public readonly int Rows = blocks.Rows;
}

/// <summary>
/// Whether a W4 kernel multiplies each group's weight scales by the token's activation scale of that group
/// (<see cref="Int4KernelCall.GroupScales"/>), as a type argument: the per-token paths keep their instructions and outputs.
/// </summary>
internal interface IActivationScaleMode
{
    /// <summary>True: <c>f = f + (s_w[r, g] · s_x[t, g]) · acc</c>, a multiply then an add in group order, as the scalar twin.</summary>
    static abstract bool PerGroup { get; }
}

/// <summary>One activation scale per token (the group scales are all 1 and not read).</summary>
internal readonly struct TokenActivationScales : IActivationScaleMode
{
    public static bool PerGroup => false;
}

/// <summary>One activation scale per (token, group of 32 columns).</summary>
internal readonly struct GroupActivationScales : IActivationScaleMode
{
    public static bool PerGroup => true;
}
