namespace AgileQuant.Core.Runtime;

/// <summary>
/// The position-based sliding-window rule both attention paths apply (docs/architecture.md, "Token pruning with
/// sliding-window layers"): a row at position p_i of a layer with window w sees the cached slots at positions p_j &gt; p_i − w.
/// </summary>
internal static class SlidingWindowMask
{
    /// <summary>
    /// The highest slot position a row at <paramref name="position"/> does not see in a layer with window
    /// <paramref name="window"/> (0 = none): p_i − w, or −∞ when every position is seen (no window, or p_i &lt; w: positions are ≥ 0).
    /// </summary>
    public static float Limit(int window, float position) =>
        window > 0 && position >= window ? position - window : float.NegativeInfinity;

    /// <summary>
    /// Sets to −∞ the scores of padding slots (<paramref name="masked"/>, when given) and of slots at positions at or below
    /// <paramref name="windowLimit"/> (outside a sliding window; −∞ for none); returns false when no slot is left.
    /// </summary>
    public static bool MaskInvisible(Span<float> scores, bool[]? masked, float[] positions, float windowLimit, int firstSlot = 0)
    {
        bool anyVisible = false;
        for (int j = 0; j < scores.Length; j++)
        {
            if (masked?[firstSlot + j] == true || positions[firstSlot + j] <= windowLimit) scores[j] = float.NegativeInfinity;
            else anyVisible = true;
        }
        return anyVisible;
    }
}
