using System.Diagnostics;
using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// The activation terms <see cref="AdvSimdInt4Kernel"/>'s SDOT group tile reads per group of 32 columns, for the 4 tokens of a
/// token tile side by side: (tiles, groups, <see cref="Entries"/>), entry <c>k</c> of (tile, g) = <c>−f · Σ_{c∈g} x_q[4 · tile + k, c]</c>
/// (int32), f = 8 for symmetric codes (the whole zero-point term, duplicated into the accumulators as it is) or 1 with zero points
/// of their own (|Σ| ≤ 32 · 128, so the low int16 half is the value too, which <c>SMULL</c> by element multiplies by the rows'
/// zero points as int16 lane 2k); entry <see cref="Tokens"/> + k = the bits of s_x[4 · tile + k, g] (only with per-group
/// activation scales); a missing token's entries are 0. One vector load then serves the 4 tokens' zero-point starts, one more
/// their group scales. Per calling thread, refilled by every call.
/// </summary>
internal sealed class GroupTileSums
{
    /// <summary>Tokens per tile (the SDOT tile's token count).</summary>
    public const int Tokens = 4;

    /// <summary>Entries per (tile, group): the 4 negated sums, then the 4 group scales.</summary>
    public const int Entries = 2 * Tokens;

    [ThreadStatic] private static GroupTileSums? t_current;

    /// <summary>The terms (tiles, groups, <see cref="Entries"/>).</summary>
    public int[] Values { get; private set; } = [];

    /// <summary>The calling thread's terms of <paramref name="xq"/> (32-column groups, <paramref name="groups"/> of them), the sums times −<paramref name="factor"/>.</summary>
    public static GroupTileSums Compute(QuantizedActivations xq, int groups, int factor)
    {
        Debug.Assert(xq.GroupSize == 32 && groups <= xq.GroupCount, "one activation sum per 32-column group");
        GroupTileSums terms = t_current ??= new GroupTileSums();
        int tiles = (xq.Tokens + Tokens - 1) / Tokens, length = tiles * groups * Entries;
        if (terms.Values.Length < length) terms.Values = GC.AllocateUninitializedArray<int>(length, pinned: true);
        int[] values = terms.Values, sums = xq.GroupSums;
        float[] scales = xq.GroupScales;
        bool groupScales = xq.HasGroupScales;
        for (int tile = 0; tile < tiles; tile++)
            for (int k = 0; k < Tokens; k++)
            {
                int t = tile * Tokens + k, at = tile * groups * Entries + k;
                bool present = t < xq.Tokens;
                for (int g = 0; g < groups; g++, at += Entries)
                {
                    values[at] = present ? -factor * sums[t * xq.GroupCount + g] : 0;
                    values[at + Tokens] = present && groupScales ? BitConverter.SingleToInt32Bits(scales[t * xq.GroupCount + g]) : 0;
                }
            }
        return terms;
    }
}
