using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using AgileQuant.Core;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Hugging Face's <c>Split</c> pre-tokenizer with behavior <c>Isolated</c>, for one regex or a sequence of them (the
/// pre-tokenizers of <see cref="PreTokenizerCatalog"/>): every regex match is one piece and every stretch of text
/// between matches is one piece, so no character is dropped; each further regex splits every piece of the one before.
/// Added tokens are cut out first and become pieces of their own. Used for BLOOM-style <c>tokenizer.json</c> files
/// (<c>Split</c> on <c> ?[^(\s|[.,!?…。，、।۔،])]+</c>, then <c>ByteLevel</c> without its regex) and for every row of
/// <see cref="PreTokenizerCatalog"/>.
/// </summary>
/// <remarks>
/// The regexes see one char per Unicode code point, as Oniguruma (Hugging Face) and llama.cpp do: .NET matches UTF-16
/// chars, where a code point above U+FFFF is two surrogates that <c>\p{L}</c> or <c>\p{S}</c> would not match. Text
/// with such code points is matched through a copy in which each one is a BMP char of the same Unicode category
/// (a lone surrogate counts as U+FFFD), and the pieces are mapped back to the original text.
/// </remarks>
public sealed class IsolatedSplitPreTokenizer : PreTokenizer
{
    private readonly Regex[] _patterns;
    private readonly AddedTokenMatcher? _addedTokens;
    private readonly IReadOnlyList<(int First, int Last)> _astralLetters;

    /// <summary>Creates the pre-tokenizer from a .NET regex and optional special tokens.</summary>
    /// <param name="pattern">Regex whose matches are pieces.</param>
    /// <param name="specialTokens">Tokens cut out verbatim before splitting (longest first), or null.</param>
    public IsolatedSplitPreTokenizer(Regex pattern, IReadOnlyDictionary<string, int>? specialTokens)
        : this([pattern ?? throw new ArgumentNullException(nameof(pattern))],
            specialTokens is null ? null : AddedTokenMatcher.Create(specialTokens.Select(t => new AddedToken(t.Key, t.Value, Special: false)), parseSpecialTokens: false),
            [])
    {
    }

    /// <summary>Creates the pre-tokenizer of <paramref name="description"/> cutting out <paramref name="addedTokens"/> first.</summary>
    internal IsolatedSplitPreTokenizer(PreTokenizerDescription description, AddedTokenMatcher? addedTokens)
        : this(description.Regexes, addedTokens, description.AstralLetterRanges)
    {
    }

    internal IsolatedSplitPreTokenizer(IReadOnlyList<Regex> patterns, AddedTokenMatcher? addedTokens, IReadOnlyList<(int First, int Last)> astralLetters)
    {
        if (patterns.Count == 0) throw new ArgumentException("expected at least one regex, found none", nameof(patterns));
        _patterns = [.. patterns];
        _addedTokens = addedTokens;
        _astralLetters = astralLetters;
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
    /// <exception cref="AgileQuantException">A regex ran past <see cref="PreTokenizerCatalog.MatchTimeout"/> on one piece.</exception>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    private List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        try
        {
            return SplitAll(text);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new AgileQuantException(
                $"The pre-tokenizer regex '{e.Pattern}' ran past {e.MatchTimeout.TotalSeconds} s on one piece of a {text.Length}-character text (it backtracks catastrophically on this input).", e);
        }
    }

    private List<(int Offset, int Length)> SplitAll(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>(text.Length / 4 + 1);
        if (_addedTokens is null)
        {
            SplitText(text, 0, text.Length, pieces);
            return pieces;
        }
        var fragments = new List<TextFragment>();
        _addedTokens.Split(text, fragments);
        foreach (TextFragment fragment in fragments)
        {
            if (fragment.IsToken) pieces.Add((fragment.Start, fragment.Length));
            else SplitText(text, fragment.Start, fragment.Start + fragment.Length, pieces);
        }
        return pieces;
    }

    /// <summary>Splits text[from..to) with every regex in turn, through the per-code-point copy when it has surrogates.</summary>
    private void SplitText(ReadOnlySpan<char> text, int from, int to, List<(int Offset, int Length)> pieces)
    {
        ReadOnlySpan<char> segment = text[from..to];
        if (segment.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            SplitWith(0, segment, 0, segment.Length, from, null, pieces);
            return;
        }
        (char[] codePoints, int[] charIndex) = PerCodePoint(segment);
        SplitWith(0, codePoints, 0, codePoints.Length, from, charIndex, pieces);
    }

    /// <summary>
    /// Splits matched[start..end) with regex <paramref name="level"/> and each piece with the regexes after it; pieces go
    /// out as ranges of the original text (<paramref name="charIndex"/> maps code point positions to chars when given).
    /// </summary>
    private void SplitWith(int level, ReadOnlySpan<char> matched, int start, int end, int origin, int[]? charIndex, List<(int Offset, int Length)> pieces)
    {
        if (start >= end) return;
        if (level == _patterns.Length)
        {
            int first = charIndex is null ? start : charIndex[start];
            int last = charIndex is null ? end : charIndex[end];
            pieces.Add((origin + first, last - first));
            return;
        }
        int cursor = start;
        foreach (ValueMatch match in _patterns[level].EnumerateMatches(matched[start..end]))
        {
            if (match.Length == 0) continue;
            int index = start + match.Index;
            SplitWith(level + 1, matched, cursor, index, origin, charIndex, pieces); // the gap before the match
            SplitWith(level + 1, matched, index, index + match.Length, origin, charIndex, pieces);
            cursor = index + match.Length;
        }
        SplitWith(level + 1, matched, cursor, end, origin, charIndex, pieces);
    }

    /// <summary>
    /// One char per code point of <paramref name="text"/> (a code point above U+FFFF becomes a BMP char of its Unicode
    /// category) and, for each position and one past the end, the index of its first char in <paramref name="text"/>.
    /// </summary>
    private (char[] CodePoints, int[] CharIndex) PerCodePoint(ReadOnlySpan<char> text)
    {
        var codePoints = new List<char>(text.Length);
        var charIndex = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            charIndex.Add(i);
            char c = text[i];
            if (!char.IsSurrogate(c)) { codePoints.Add(c); i++; continue; }
            if (Rune.DecodeFromUtf16(text[i..], out Rune rune, out int consumed) != System.Buffers.OperationStatus.Done)
            {
                codePoints.Add('\uFFFD'); // a lone surrogate: what UTF-8 encoding writes for it
                i += consumed;
                continue;
            }
            codePoints.Add(IsListedAstralLetter(rune.Value) ? CasedLetterStandIn : StandIn(Rune.GetUnicodeCategory(rune)));
            i += consumed;
        }
        charIndex.Add(text.Length);
        return ([.. codePoints], [.. charIndex]);
    }

    private bool IsListedAstralLetter(int codePoint)
    {
        foreach ((int first, int last) in _astralLetters)
            if (codePoint >= first && codePoint <= last) return true;
        return false;
    }

    /// <summary>Stands in for an astral letter a row's letter class lists by range: Latin capital A with grave, a listed cased letter.</summary>
    private const char CasedLetterStandIn = '\u00C0';

    /// <summary>
    /// A BMP char of <paramref name="category"/> that no row's pattern names literally (so only its category can
    /// match it): letters outside DeepSeek's listed ranges and outside ASCII, digits outside 0-9, symbols and
    /// punctuation outside every listed class.
    /// </summary>
    internal static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\uA790',       // Latin capital N with descender
        UnicodeCategory.LowercaseLetter => '\uA791',       // Latin small n with descender
        UnicodeCategory.TitlecaseLetter => '\u01C5',       // Latin capital D with small z with caron
        UnicodeCategory.ModifierLetter => '\u02B0',        // modifier letter small h
        UnicodeCategory.OtherLetter => '\uA000',           // Yi syllable it
        UnicodeCategory.NonSpacingMark => '\u0300',        // combining grave accent
        UnicodeCategory.SpacingCombiningMark => '\u0903',  // Devanagari sign visarga
        UnicodeCategory.EnclosingMark => '\u20DD',         // combining enclosing circle
        UnicodeCategory.DecimalDigitNumber => '\u0660',    // Arabic-Indic digit zero
        UnicodeCategory.LetterNumber => '\u2160',          // Roman numeral one
        UnicodeCategory.OtherNumber => '\u00B2',           // superscript two
        UnicodeCategory.ConnectorPunctuation => '\u203F',  // undertie
        UnicodeCategory.DashPunctuation => '\u2010',       // hyphen
        UnicodeCategory.OpenPunctuation => '\u2045',       // left square bracket with quill
        UnicodeCategory.ClosePunctuation => '\u2046',      // right square bracket with quill
        UnicodeCategory.InitialQuotePunctuation => '\u2039', // single left-pointing angle quotation mark
        UnicodeCategory.FinalQuotePunctuation => '\u203A', // single right-pointing angle quotation mark
        UnicodeCategory.OtherPunctuation => '\u203B',      // reference mark
        UnicodeCategory.MathSymbol => '\u2200',            // for all
        UnicodeCategory.CurrencySymbol => '\u20A0',        // euro-currency sign
        UnicodeCategory.ModifierSymbol => '\u02C2',        // modifier letter left arrowhead
        UnicodeCategory.OtherSymbol => '\u00A9',           // copyright sign
        UnicodeCategory.Format => '\u200B',                // zero width space
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\uFFFF',                                     // unassigned (a noncharacter)
    };
}
