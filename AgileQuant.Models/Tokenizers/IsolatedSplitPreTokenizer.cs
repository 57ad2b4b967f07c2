using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Hugging Face's <c>Split</c> pre-tokenizer with behavior <c>Isolated</c>: every regex match is one piece and
/// every stretch of text between matches is one piece, so no character is dropped. Special tokens are cut
/// out first and become pieces of their own. Used for BLOOM-style <c>tokenizer.json</c> files
/// (<c>Split</c> on <c> ?[^(\s|[.,!?…。，、।۔،])]+</c>, then <c>ByteLevel</c> without its regex).
/// </summary>
public sealed class IsolatedSplitPreTokenizer : PreTokenizer
{
    private readonly Regex _pattern;
    private readonly Regex? _specialTokens;

    /// <summary>Creates the pre-tokenizer from a .NET regex and optional special tokens.</summary>
    /// <param name="pattern">Regex whose matches are pieces.</param>
    /// <param name="specialTokens">Tokens cut out verbatim before splitting (longest first), or null.</param>
    public IsolatedSplitPreTokenizer(Regex pattern, IReadOnlyDictionary<string, int>? specialTokens)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        _pattern = pattern;
        if (specialTokens is { Count: > 0 })
            _specialTokens = new Regex(string.Join("|", specialTokens.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)),
                RegexOptions.CultureInvariant);
    }

    /// <summary>
    /// Rewrites an Oniguruma pattern (the dialect of <c>tokenizer.json</c>) for .NET: a character class nested
    /// in a class, as in BLOOM's <c>[^(\s|[.,!?])]</c>, is a union in Oniguruma, so its members are inlined
    /// into the enclosing class (<c>[^(\s|.,!?)]</c>). Returns null for a nested negated or POSIX class.
    /// </summary>
    /// <param name="pattern">The Oniguruma pattern.</param>
    public static string? TranslateOnigurumaPattern(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var result = new StringBuilder(pattern.Length);
        int depth = 0;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                result.Append(c).Append(pattern[++i]);
                continue;
            }
            if (c == '[')
            {
                if (depth > 0)
                {
                    if (i + 1 < pattern.Length && pattern[i + 1] is '^' or ':') return null;
                    depth++;
                    continue; // a nested class: its members join the enclosing one
                }
                result.Append(c);
                depth = 1;
                if (i + 1 < pattern.Length && pattern[i + 1] == '^') result.Append(pattern[++i]);
                if (i + 1 < pattern.Length && pattern[i + 1] == ']') { result.Append(@"\]"); i++; } // leading ']' is literal
                continue;
            }
            if (c == ']' && depth > 0)
            {
                depth--;
                if (depth == 0) result.Append(c);
                continue;
            }
            result.Append(c);
        }
        return depth == 0 ? result.ToString() : null;
    }

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Split(text.AsSpan());
    }

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    private List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        int start = 0;
        if (_specialTokens is not null)
        {
            foreach (ValueMatch special in _specialTokens.EnumerateMatches(text))
            {
                SplitSegment(text, start, special.Index, pieces);
                pieces.Add((special.Index, special.Length));
                start = special.Index + special.Length;
            }
        }
        SplitSegment(text, start, text.Length, pieces);
        return pieces;
    }

    private void SplitSegment(ReadOnlySpan<char> text, int from, int to, List<(int Offset, int Length)> pieces)
    {
        int cursor = from;
        foreach (ValueMatch match in _pattern.EnumerateMatches(text[from..to]))
        {
            if (match.Length == 0) continue;
            int index = from + match.Index;
            if (index > cursor) pieces.Add((cursor, index - cursor));
            pieces.Add((index, match.Length));
            cursor = index + match.Length;
        }
        if (to > cursor) pieces.Add((cursor, to - cursor));
    }
}
