using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// WordPiece over a vocabulary whose word-initial pieces start with <c>▁</c> (U+2581) and whose continuing pieces are
/// bare: the form of GGUF <c>tokenizer.ggml.model = "bert"</c>, encoded as llama.cpp's WPM tokenizer does
/// (src/llama-vocab.cpp, <c>llm_tokenizer_wpm_session</c>). When accents are stripped each code point becomes the first
/// code point of its canonical decomposition (llama.cpp's NFD table: a Hangul syllable keeps its leading consonant, where
/// Hugging Face's BERT keeps all its jamo);
/// whitespace ends a word; control and format characters, U+FFFD and (when stripping accents) marks are dropped; letters
/// are lower-cased when asked; each punctuation character, ASCII symbol and CJK ideograph is a word of its own. Each
/// word, with a <c>▁</c> before it, is cut into the longest pieces of the vocabulary from the left; a word that cannot
/// be cut whole becomes one unknown token. Special tokens are cut out of the text first when asked for.
/// </summary>
/// <remarks>
/// Encoding adds no [CLS]/[SEP]. Each token's character range is its whole word's. Immutable; safe from several
/// threads at once.
/// </remarks>
public sealed class WordPieceVocabularyTokenizer : Tokenizer
{
    private const char WordStart = '\u2581';
    private readonly string[] _pieces;   // (V,) token text as the vocabulary spells it
    private readonly bool[] _isControl;  // (V,) control and unknown tokens: decode to nothing
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idBySpan;
    private readonly int _maxPieceLength;
    private readonly bool _lowercase;
    private readonly bool _stripAccents;
    private readonly AddedTokenMatcher? _addedTokens;

    private WordPieceVocabularyTokenizer(string[] pieces, bool[] isControl, Dictionary<string, int> ids, int unknownId, bool lowercase, bool stripAccents,
        AddedTokenMatcher? addedTokens)
    {
        _pieces = pieces;
        _isControl = isControl;
        _idBySpan = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _maxPieceLength = ids.Keys.Max(k => k.Length);
        UnknownId = unknownId;
        _lowercase = lowercase;
        _stripAccents = stripAccents;
        _addedTokens = addedTokens;
    }

    /// <summary>The token a word that cannot be cut into pieces becomes.</summary>
    public int UnknownId { get; }

    /// <summary>Number of tokens in the vocabulary.</summary>
    public int VocabSize => _pieces.Length;

    /// <summary>Builds the tokenizer, validating the token list and ids.</summary>
    /// <param name="sourcePath">The file the vocabulary came from, for error messages.</param>
    /// <param name="pieces">(V,) pieces: <c>▁word</c> for a word's first piece, <c>ing</c> for a continuing one.</param>
    /// <param name="tokenTypes">(V,) <see cref="SpmVocabularyTokenizer.TokenType"/> codes, or null for all normal.</param>
    /// <param name="unknownId">The unknown token.</param>
    /// <param name="lowercase">Whether letters are lower-cased.</param>
    /// <param name="stripAccents">Whether text is decomposed and marks dropped.</param>
    /// <param name="parseSpecialTokens">Whether control tokens written in the text ([CLS], [SEP], …) encode as their ids.</param>
    /// <exception cref="ModelFormatException">The lists disagree in length or the unknown id is out of range.</exception>
    public static WordPieceVocabularyTokenizer Create(string sourcePath, IReadOnlyList<string> pieces, IReadOnlyList<int>? tokenTypes, int unknownId,
        bool lowercase, bool stripAccents, bool parseSpecialTokens = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentNullException.ThrowIfNull(pieces);
        if (pieces.Count == 0) throw new ModelFormatException(sourcePath, null, "expected at least one token, found none");
        if (tokenTypes is not null && tokenTypes.Count != pieces.Count)
            throw new ModelFormatException(sourcePath, null, $"expected {pieces.Count} token types (one per token), found {tokenTypes.Count}");
        if ((uint)unknownId >= (uint)pieces.Count)
            throw new ModelFormatException(sourcePath, null, $"expected the unknown token id in 0..{pieces.Count - 1}, found {unknownId}");
        string[] pieceArray = [.. pieces];
        var isControl = new bool[pieceArray.Length];
        var ids = new Dictionary<string, int>(pieceArray.Length, StringComparer.Ordinal);
        for (int id = 0; id < pieceArray.Length; id++)
        {
            if (pieceArray[id] is null) throw new ModelFormatException(sourcePath, null, $"token {id}: expected a piece, found null");
            var type = (SpmVocabularyTokenizer.TokenType)(tokenTypes?[id] ?? (int)SpmVocabularyTokenizer.TokenType.Normal);
            isControl[id] = type is SpmVocabularyTokenizer.TokenType.Control or SpmVocabularyTokenizer.TokenType.Unknown || id == unknownId;
            if (pieceArray[id].Length > 0) ids.TryAdd(pieceArray[id], id); // first id wins on duplicates
        }
        AddedTokenMatcher? added = AddedTokenMatcher.Create(SpmVocabularyTokenizer.AddedTokensOfTypes(pieceArray, tokenTypes, null), parseSpecialTokens);
        return new WordPieceVocabularyTokenizer(pieceArray, isControl, ids, unknownId, lowercase, stripAccents, added);
    }

    /// <summary>Text of token <paramref name="id"/> as stored in the vocabulary.</summary>
    public string GetPiece(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _pieces[id];
    }

    /// <summary>Encodes <paramref name="text"/> into ids and each token's character range (its word's).</summary>
    private void EncodeCore(ReadOnlySpan<char> text, List<int> ids, List<int> starts, List<int> ends)
    {
        if (_addedTokens is null)
        {
            EncodeText(text, 0, ids, starts, ends);
            return;
        }
        var fragments = new List<TextFragment>();
        _addedTokens.Split(text, fragments);
        foreach (TextFragment fragment in fragments)
        {
            if (!fragment.IsToken)
            {
                EncodeText(text.Slice(fragment.Start, fragment.Length), fragment.Start, ids, starts, ends);
                continue;
            }
            ids.Add(fragment.TokenId);
            starts.Add(fragment.Start);
            ends.Add(fragment.Start + fragment.Length);
        }
    }

    private void EncodeText(ReadOnlySpan<char> text, int origin, List<int> ids, List<int> starts, List<int> ends)
    {
        var word = new StringBuilder().Append(WordStart);
        int wordStart = 0, wordEnd = 0;
        var decomposed = new List<int>(4);
        Span<char> utf16 = stackalloc char[2];
        for (int i = 0; i < text.Length;)
        {
            if (Rune.DecodeFromUtf16(text[i..], out Rune rune, out int consumed) != OperationStatus.Done) rune = Rune.ReplacementChar;
            decomposed.Clear();
            if (_stripAccents)
            {
                // llama.cpp's NFD table keeps the first code point of each decomposition: the rest are marks (dropped
                // below anyway) except in Hangul, where a syllable keeps its leading consonant only.
                CanonicalDecomposition.Decompose(rune.Value, decomposed);
                decomposed.RemoveRange(1, decomposed.Count - 1);
            }
            else
            {
                decomposed.Add(rune.Value);
            }
            foreach (int codePoint in decomposed)
            {
                var c = new Rune(codePoint);
                UnicodeCategory category = Rune.GetUnicodeCategory(c);
                if (Rune.IsWhiteSpace(c))
                {
                    EndWord();
                    continue;
                }
                if (codePoint is 0 or 0xFFFD || category is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
                        or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned)
                    continue;
                if (_stripAccents && category is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark)
                    continue;
                Rune output = _lowercase ? Rune.ToLowerInvariant(c) : c;
                int length = output.EncodeToUtf16(utf16);
                bool alone = IsPunctuation(category) || codePoint < 0x7F && IsSymbol(category) || IsChineseCharacter(codePoint);
                if (alone) EndWord();
                if (word.Length == 1) wordStart = i;
                word.Append(utf16[..length]);
                wordEnd = i + consumed;
                if (alone) EndWord();
            }
            i += consumed;
        }
        EndWord();

        void EndWord()
        {
            if (word.Length == 1) return;
            CutIntoPieces(word.ToString(), origin + wordStart, origin + wordEnd, ids, starts, ends);
            word.Length = 1;
        }
    }

    /// <summary>Longest pieces from the left; the unknown token for the whole word when some position matches no piece.</summary>
    private void CutIntoPieces(string word, int start, int end, List<int> ids, List<int> starts, List<int> ends)
    {
        int first = ids.Count;
        for (int i = 0; i < word.Length;)
        {
            int matched = 0;
            for (int j = Math.Min(word.Length, i + _maxPieceLength); j > i; j--)
            {
                if (_idBySpan.TryGetValue(word.AsSpan(i, j - i), out int id))
                {
                    ids.Add(id);
                    matched = j - i;
                    break;
                }
            }
            if (matched == 0)
            {
                ids.RemoveRange(first, ids.Count - first);
                ids.Add(UnknownId);
                break;
            }
            i += matched;
        }
        for (int t = first; t < ids.Count; t++)
        {
            starts.Add(start);
            ends.Add(end);
        }
    }

    private static bool IsPunctuation(UnicodeCategory category) => category is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
        or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
        or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    private static bool IsSymbol(UnicodeCategory category) => category is UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol
        or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol;

    /// <summary>The CJK ideograph blocks BERT splits one by one (llama.cpp's list, which keeps Hugging Face's 0x2B920 start).</summary>
    private static bool IsChineseCharacter(int c) =>
        c is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B920 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        List<int> ids = [], starts = [], ends = [];
        EncodeCore(input, ids, starts, ends);
        int kept = TokenBudget.KeptFromStart(starts, ends, ids.Count, settings.MaxTokenCount);
        var tokens = new List<EncodedToken>(kept);
        for (int t = 0; t < kept; t++) tokens.Add(new EncodedToken(ids[t], _pieces[ids[t]], new Range(starts[t], ends[t])));
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = kept == ids.Count ? input.Length : TokenBudget.CharsUpTo(ends, kept) };
    }

    /// <inheritdoc/>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        List<int> ids = [], starts = [], ends = [];
        EncodeCore(input, ids, starts, ends);
        int kept = TokenBudget.KeptFromStart(starts, ends, ids.Count, settings.MaxTokenCount);
        int consumed = kept == ids.Count ? input.Length : TokenBudget.CharsUpTo(ends, kept);
        if (kept < ids.Count) ids.RemoveRange(kept, ids.Count - kept);
        return new EncodeResults<int> { Tokens = ids, NormalizedText = null, CharsConsumed = consumed };
    }

    /// <inheritdoc/>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings) =>
        EncodeToIds(text, textSpan, settings).Tokens.Count;

    /// <inheritdoc/>
    protected override int GetIndexByTokenCount(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings, bool fromEnd,
        out string? normalizedText, out int tokenCount)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        normalizedText = null;
        List<int> ids = [], starts = [], ends = [];
        EncodeCore(input, ids, starts, ends);
        if (!fromEnd)
        {
            tokenCount = TokenBudget.KeptFromStart(starts, ends, ids.Count, settings.MaxTokenCount);
            return tokenCount == ids.Count ? input.Length : TokenBudget.CharsUpTo(ends, tokenCount);
        }
        int first = TokenBudget.FirstKeptFromEnd(starts, ends, ids.Count, settings.MaxTokenCount);
        tokenCount = ids.Count - first;
        return TokenBudget.StartOfKept(starts, first, ids.Count, input.Length);
    }

    /// <summary>
    /// Decodes ids as llama.cpp prints them: a word-initial piece as a space and its text, a continuing piece as its
    /// text, control and unknown tokens as nothing; the leading space of the result dropped.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside 0..<see cref="VocabSize"/>-1.</exception>
    public override string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = new StringBuilder();
        foreach (int id in ids) AppendPiece(text, id);
        if (text.Length > 0 && text[0] == ' ') text.Remove(0, 1);
        return text.ToString();
    }

    /// <inheritdoc/>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        idsConsumed = 0;
        charsWritten = 0;
        var piece = new StringBuilder();
        foreach (int id in ids)
        {
            piece.Clear();
            AppendPiece(piece, id);
            if (charsWritten == 0 && piece.Length > 0 && piece[0] == ' ') piece.Remove(0, 1);
            if (charsWritten + piece.Length > destination.Length) return OperationStatus.DestinationTooSmall;
            piece.CopyTo(0, destination[charsWritten..], piece.Length);
            charsWritten += piece.Length;
            idsConsumed++;
        }
        return OperationStatus.Done;
    }

    private void AppendPiece(StringBuilder text, int id)
    {
        if ((uint)id >= (uint)_pieces.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"expected a token id in 0..{_pieces.Length - 1}");
        if (_isControl[id]) return;
        string piece = _pieces[id];
        text.Append(piece.Length > 0 && piece[0] == WordStart ? " " + piece[1..] : piece);
    }
}
