namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Cuts an encoding with character ranges (one start and end per token) to a token budget without splitting the
/// tokens of one character (byte tokens that share a range), from the start or from the end.
/// </summary>
internal static class TokenBudget
{
    /// <summary>How many leading tokens of <paramref name="count"/> fit <paramref name="maxTokenCount"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokenCount"/> is not positive.</exception>
    public static int KeptFromStart(List<int> starts, List<int> ends, int count, int maxTokenCount)
    {
        if (maxTokenCount <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokenCount), maxTokenCount, "expected a positive token count");
        if (maxTokenCount >= count) return count;
        int kept = maxTokenCount;
        while (kept > 0 && SharesCharacter(starts, ends, kept)) kept--;
        return kept;
    }

    /// <summary>The chars the first <paramref name="kept"/> tokens cover.</summary>
    public static int CharsUpTo(List<int> ends, int kept) => kept == 0 ? 0 : ends[kept - 1];

    /// <summary>The first of the last tokens of <paramref name="count"/> that fit <paramref name="maxTokenCount"/>.</summary>
    public static int FirstKeptFromEnd(List<int> starts, List<int> ends, int count, int maxTokenCount)
    {
        int first = Math.Max(0, count - Math.Max(0, maxTokenCount));
        while (first > 0 && first < count && SharesCharacter(starts, ends, first)) first++;
        return first;
    }

    /// <summary>The char where the tokens from <paramref name="first"/> on begin (0 when all are kept, the text's end when none).</summary>
    public static int StartOfKept(List<int> starts, int first, int count, int textLength) =>
        first == 0 ? 0 : first < count ? starts[first] : textLength;

    /// <summary>Whether token <paramref name="t"/> covers the same non-empty range as the token before it.</summary>
    private static bool SharesCharacter(List<int> starts, List<int> ends, int t) =>
        starts[t] == starts[t - 1] && ends[t] == ends[t - 1] && ends[t] > starts[t];
}
