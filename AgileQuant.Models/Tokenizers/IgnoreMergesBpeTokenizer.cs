using System.Buffers;
using System.Text;
using System.Text.Unicode;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// A byte-level BPE whose pieces found whole in the vocabulary become that token without merging (Hugging Face's BPE
/// <c>ignore_merges</c>, llama.cpp's <c>ignore_merges</c> for <c>llama-bpe</c>; tiktoken encodes this way). Llama 3's
/// merges alone do not rebuild some of its tokens (" Việt" would come out as " Vi", "ệ", "t"). Every other piece is
/// merged by the inner <see cref="BpeTokenizer"/>, which also holds the pre-tokenizer, the normalizer, the added tokens
/// and the decoding.
/// </summary>
/// <remarks>Immutable; encoding and decoding are safe from several threads at once.</remarks>
public sealed class IgnoreMergesBpeTokenizer : Tokenizer
{
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _wholePieces; // piece text -> token
    private readonly Dictionary<int, string> _tokenText;   // token -> vocabulary spelling, for whole pieces
    private readonly int _bosId = -1;

    /// <summary>Wraps <paramref name="bpe"/> (built without a BOS token) with the whole-piece lookup of <paramref name="vocabulary"/>.</summary>
    /// <param name="bpe">The byte-level BPE with the pre-tokenizer, normalizer and added tokens.</param>
    /// <param name="vocabulary">The byte-level vocabulary (token → id) <paramref name="bpe"/> was built from.</param>
    /// <param name="bosToken">Token prepended to every encoding, or null.</param>
    internal IgnoreMergesBpeTokenizer(BpeTokenizer bpe, IReadOnlyDictionary<string, int> vocabulary, string? bosToken)
    {
        Bpe = bpe;
        HashSet<int> added = bpe.SpecialTokens is null ? [] : [.. bpe.SpecialTokens.Values];
        var whole = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        _tokenText = new Dictionary<int, string>(vocabulary.Count);
        byte[] buffer = new byte[64];
        foreach ((string token, int id) in vocabulary)
        {
            if (added.Contains(id) || ByteLevelText(token, ref buffer) is not string text) continue;
            if (whole.TryAdd(text, id)) _tokenText[id] = token;
        }
        _wholePieces = whole.GetAlternateLookup<ReadOnlySpan<char>>();
        if (bosToken is not null)
        {
            _bosId = vocabulary.TryGetValue(bosToken, out int bos) ? bos
                : throw new ArgumentException($"expected the BOS token '{bosToken}' in the vocabulary, found none", nameof(bosToken));
            _tokenText[_bosId] = bosToken;
        }
    }

    /// <summary>The BPE that merges pieces not found whole, and decodes.</summary>
    public BpeTokenizer Bpe { get; }

    /// <summary>Token → id, as <see cref="BpeTokenizer.Vocabulary"/>.</summary>
    public IReadOnlyDictionary<string, int> Vocabulary => Bpe.Vocabulary;

    /// <summary>The id prepended to every encoding, or null.</summary>
    public int? BeginningOfSentenceId => _bosId >= 0 ? _bosId : null;

    /// <inheritdoc/>
    public override PreTokenizer? PreTokenizer => Bpe.PreTokenizer;

    /// <inheritdoc/>
    public override Normalizer? Normalizer => Bpe.Normalizer;

    /// <summary>The text a byte-level token stands for, or null when its bytes are not whole UTF-8 characters.</summary>
    private static string? ByteLevelText(string token, ref byte[] buffer)
    {
        if (buffer.Length < token.Length) buffer = new byte[token.Length * 2];
        for (int i = 0; i < token.Length; i++)
        {
            int b = ByteLevelAlphabet.ByteOf(token[i]);
            if (b < 0) return null;
            buffer[i] = (byte)b;
        }
        ReadOnlySpan<byte> bytes = buffer.AsSpan(0, token.Length);
        return Utf8.IsValid(bytes) ? Encoding.UTF8.GetString(bytes) : null;
    }

    /// <summary>Encodes <paramref name="text"/>: ids and, when asked, each token's text and char range.</summary>
    private string? EncodeCore(ReadOnlySpan<char> text, bool considerPreTokenization, bool considerNormalization,
        List<int> ids, List<string>? values, List<int>? starts, List<int>? ends)
    {
        string? normalized = considerNormalization && Normalizer is not null ? Normalizer.Normalize(text) : null;
        ReadOnlySpan<char> input = normalized is null ? text : normalized.AsSpan();
        if (_bosId >= 0) Add(_bosId, 0, 0);
        if (input.IsEmpty) return normalized;
        IEnumerable<(int Offset, int Length)> pieces = considerPreTokenization && PreTokenizer is not null ? PreTokenizer.PreTokenize(input) : [(0, input.Length)];
        foreach ((int offset, int length) in pieces)
        {
            ReadOnlySpan<char> piece = input.Slice(offset, length);
            if (_wholePieces.TryGetValue(piece, out int id))
            {
                Add(id, offset, offset + length);
            }
            else if (values is null && starts is null)
            {
                ids.AddRange(Bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
            }
            else
            {
                foreach (EncodedToken token in Bpe.EncodeToTokens(piece, out _, considerPreTokenization: false, considerNormalization: false))
                {
                    ids.Add(token.Id);
                    values?.Add(token.Value);
                    starts?.Add(offset + token.Offset.Start.Value);
                    ends?.Add(offset + token.Offset.End.Value);
                }
            }
        }
        return normalized;

        void Add(int token, int start, int end)
        {
            ids.Add(token);
            values?.Add(_tokenText[token]);
            starts?.Add(start);
            ends?.Add(end);
        }
    }

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        List<int> ids = [], starts = [], ends = [];
        List<string> values = [];
        string? normalized = EncodeCore(input, settings.ConsiderPreTokenization, settings.ConsiderNormalization, ids, values, starts, ends);
        int kept = TokenBudget.KeptFromStart(starts, ends, ids.Count, settings.MaxTokenCount);
        var tokens = new List<EncodedToken>(kept);
        for (int t = 0; t < kept; t++) tokens.Add(new EncodedToken(ids[t], values[t], new Range(starts[t], ends[t])));
        int length = normalized?.Length ?? input.Length;
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = normalized, CharsConsumed = kept == ids.Count ? length : TokenBudget.CharsUpTo(ends, kept) };
    }

    /// <inheritdoc/>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        if (settings.MaxTokenCount == int.MaxValue)
        {
            var all = new List<int>(input.Length / 3 + 2);
            string? normalized = EncodeCore(input, settings.ConsiderPreTokenization, settings.ConsiderNormalization, all, null, null, null);
            return new EncodeResults<int> { Tokens = all, NormalizedText = normalized, CharsConsumed = normalized?.Length ?? input.Length };
        }
        EncodeResults<EncodedToken> tokens = EncodeToTokens(text, textSpan, settings);
        return new EncodeResults<int> { Tokens = tokens.Tokens.Select(t => t.Id).ToList(), NormalizedText = tokens.NormalizedText, CharsConsumed = tokens.CharsConsumed };
    }

    /// <inheritdoc/>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings) =>
        EncodeToIds(text, textSpan, settings).Tokens.Count;

    /// <inheritdoc/>
    protected override int GetIndexByTokenCount(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings, bool fromEnd,
        out string? normalizedText, out int tokenCount)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        List<int> ids = [], starts = [], ends = [];
        normalizedText = EncodeCore(input, settings.ConsiderPreTokenization, settings.ConsiderNormalization, ids, null, starts, ends);
        int length = normalizedText?.Length ?? input.Length;
        if (!fromEnd)
        {
            tokenCount = TokenBudget.KeptFromStart(starts, ends, ids.Count, settings.MaxTokenCount);
            return tokenCount == ids.Count ? length : TokenBudget.CharsUpTo(ends, tokenCount);
        }
        int first = TokenBudget.FirstKeptFromEnd(starts, ends, ids.Count, settings.MaxTokenCount);
        tokenCount = ids.Count - first;
        return TokenBudget.StartOfKept(starts, first, ids.Count, length);
    }

    /// <inheritdoc/>
    public override string Decode(IEnumerable<int> ids) => Bpe.Decode(ids);

    /// <inheritdoc/>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten) =>
        Bpe.Decode(ids, destination, out idsConsumed, out charsWritten);
}

/// <summary>
/// GPT-2's byte-level alphabet (openai/gpt-2 src/encoder.py <c>bytes_to_unicode</c>): printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards in byte order (so a space is <c>Ġ</c>, U+0120).
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly short[] ByteByChar = BuildInverse(); // (324,) byte of each alphabet char, -1 elsewhere

    private static short[] BuildInverse()
    {
        var inverse = new short[0x100 + 68];
        Array.Fill(inverse, (short)-1);
        int next = 0x100;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            inverse[printable ? b : next++] = (short)b;
        }
        return inverse;
    }

    /// <summary>The byte <paramref name="c"/> stands for, or -1 when it is not in the alphabet.</summary>
    public static int ByteOf(char c) => c < ByteByChar.Length ? ByteByChar[c] : -1;
}
