using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics;

/// <summary>Pointers and shape of one single-token W4 call (<see cref="Avx2.Avx2Int4Gemv"/>, <see cref="Avx512.Avx512Int4Gemv"/>).</summary>
internal readonly unsafe struct Int4GemvStream(Int4RowBlocks blocks, int groupSize, byte* packed, byte* zeroPoints, sbyte* codes, int* segmentSums,
    float tokenScale, float* y)
{
    /// <summary>The row blocks' packed nibbles (<see cref="Int4RowBlocks.Packed"/>).</summary>
    public readonly byte* Packed = packed;

    /// <summary>Zero points (blocks, groups, 8), or null for symmetric codes.</summary>
    public readonly byte* ZeroPoints = zeroPoints;

    /// <summary>The token's activation codes, plain order, zero padded.</summary>
    public readonly sbyte* Codes = codes;

    /// <summary>Σ codes per 32-column segment.</summary>
    public readonly int* SegmentSums = segmentSums;

    /// <summary>Output (Rows).</summary>
    public readonly float* Y = y;

    /// <summary>The token's activation scale s_x.</summary>
    public readonly float TokenScale = tokenScale;

    /// <summary>8-column chunks per row.</summary>
    public readonly int Chunks = blocks.Chunks;

    /// <summary>Scale groups per row.</summary>
    public readonly int Groups = blocks.GroupCount;

    /// <summary>Columns per scale group (32, 64 or 128).</summary>
    public readonly int GroupSize = groupSize;

    /// <summary>Rows of the matrix.</summary>
    public readonly int Rows = blocks.Rows;
}
