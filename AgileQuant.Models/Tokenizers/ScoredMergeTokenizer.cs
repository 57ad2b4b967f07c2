using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// A SentencePiece-style BPE tokenizer over a vocabulary of scored pieces: the text becomes one piece per
/// codepoint (or its UTF-8 byte tokens when the codepoint is not a piece), preceded by a dummy-prefix
/// space, then the adjacent pair whose concatenation is a piece of highest score merges (leftmost pair on
/// ties) until no pair merges. This is <c>encode()</c> of karpathy/llama2.c <c>run.c</c> and the SPM
/// tokenizer of llama.cpp (<c>llm_tokenizer_spm</c>), implemented with a priority queue over a linked
/// list of symbols: O(n log n) instead of llama2.c's O(n²) rescans, with the same merge at every step.
/// The text is first cut where no piece can span (between two one-char pieces whose pair occurs in no
/// piece, e.g. before a word's leading space), and each segment merges on its own. A vocabulary given with merge
/// ranks (Hugging Face BPE with byte fallback, as Gemma's <c>tokenizer.json</c>) merges the listed pair of lowest
/// rank instead (leftmost on ties), which is Hugging Face's BPE. Added tokens (user-defined ones always, control
/// ones when asked) are cut out of the text first; each stretch of text between them is encoded on its own.
/// </summary>
/// <remarks>Instances are immutable; encoding and decoding are safe from several threads at once.</remarks>
public abstract class ScoredMergeTokenizer : Tokenizer
{
    private readonly string[] _pieces;              // (V,) token text as stored in the vocabulary
    private readonly byte[][] _decodedBytes;        // (V,) bytes a token contributes to decoded text
    private readonly float[] _scores;               // (V,) merge priority, higher merges first
    private readonly int[] _byteTokenIds;           // (256,) token of each byte for byte fallback
    private readonly Dictionary<string, int> _idByPiece;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idBySpan;
    private readonly Dictionary<long, (int Merged, float Priority)> _mergeByPair; // key (left << 32) | right -> merged id, higher priority first
    private readonly AddedTokenMatcher? _addedTokens;
    private readonly bool _prefixOnlyAtTextStart;
    private readonly char _spaceSymbol;
    private readonly bool _addSpacePrefix;
    private readonly bool _stripSpaceAtStart;
    private readonly bool _stripSpaceAfterBos;
    private readonly float _mergeFloor;
    private readonly int _spaceId;
    private readonly int _maxDecodedLength;
    private readonly HashSet<uint> _pieceBigrams;   // (c1 << 16 | c2) for every adjacent char pair inside a matchable piece
    private readonly bool[] _isByteToken;           // (V,) byte-fallback token: its space is data, never a word prefix

    private protected ScoredMergeTokenizer(ScoredVocabulary vocabulary, bool addBos, AddedTokenMatcher? addedTokens = null)
    {
        _pieces = vocabulary.Pieces;
        _decodedBytes = vocabulary.DecodedBytes;
        _scores = vocabulary.Scores;
        _byteTokenIds = vocabulary.ByteTokenIds;
        _spaceSymbol = vocabulary.SpaceSymbol;
        _addSpacePrefix = vocabulary.AddSpacePrefix;
        _stripSpaceAtStart = vocabulary.StripSpaceAtStart;
        _stripSpaceAfterBos = vocabulary.StripSpaceAfterBos;
        _prefixOnlyAtTextStart = vocabulary.PrefixOnlyAtTextStart;
        _mergeFloor = vocabulary.MergeFloor;
        _addedTokens = addedTokens;
        BosId = vocabulary.BosId;
        EosId = vocabulary.EosId;
        AddBos = addBos;
        if (addBos && BosId < 0) throw new ArgumentException("expected a BOS token to prepend, found none", nameof(addBos));
        _idByPiece = new Dictionary<string, int>(_pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < _pieces.Length; id++)
            if (_pieces[id].Length > 0 && vocabulary.Matchable[id]) _idByPiece.TryAdd(_pieces[id], id); // first id wins on duplicates
        _idBySpan = _idByPiece.GetAlternateLookup<ReadOnlySpan<char>>();
        _spaceId = _idByPiece.TryGetValue(_spaceSymbol.ToString(), out int space) ? space : _byteTokenIds[' '];
        _mergeByPair = vocabulary.Merges is null ? BuildMergeTable() : BuildRankedMergeTable(vocabulary.Merges);
        _maxDecodedLength = _decodedBytes.Max(b => b.Length);
        _pieceBigrams = [];
        foreach (string piece in _idByPiece.Keys) AddBigrams(piece);
        foreach ((int merged, _) in _mergeByPair.Values) AddBigrams(_pieces[merged]);
        _isByteToken = new bool[_pieces.Length];
        foreach (int id in _byteTokenIds) _isByteToken[id] = ByteTokenValue(_pieces[id]) is not null;
    }

    /// <summary>Id of the beginning-of-sequence token (-1 when the vocabulary declares none).</summary>
    public int BosId { get; }

    /// <summary>Id of the end-of-sequence token (-1 when the vocabulary declares none).</summary>
    public int EosId { get; }

    /// <summary>Number of tokens in the vocabulary.</summary>
    public int VocabSize => _pieces.Length;

    /// <summary>Whether encoding prepends <see cref="BosId"/>.</summary>
    public bool AddBos { get; }

    /// <summary>Text of token <paramref name="id"/> as stored in the vocabulary (byte tokens read <c>&lt;0xNN&gt;</c>).</summary>
    public string GetPiece(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _pieces[id];
    }

    /// <summary>Merge score of token <paramref name="id"/> (higher merges first).</summary>
    public float GetScore(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _scores[id];
    }

    /// <summary>The byte named by a <c>&lt;0xNN&gt;</c> piece, or null when the piece is not one.</summary>
    private protected static byte? ByteTokenValue(string piece)
    {
        if (piece.Length != 6 || !piece.StartsWith("<0x", StringComparison.Ordinal) || piece[5] != '>') return null;
        return byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte value)
            ? value : null;
    }

    private void AddBigrams(string piece)
    {
        for (int c = 1; c < piece.Length; c++) _pieceBigrams.Add((uint)piece[c - 1] << 16 | piece[c]);
    }

    /// <summary>For every token that splits into two tokens, maps the pair to it and its score (scores above llama2.c's floor only).</summary>
    private Dictionary<long, (int, float)> BuildMergeTable()
    {
        var table = new Dictionary<long, (int, float)>();
        foreach ((string piece, int id) in _idByPiece)
        {
            if (!(_scores[id] > _mergeFloor)) continue;
            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue; // never split a surrogate pair
                if (_idBySpan.TryGetValue(piece.AsSpan(0, split), out int left) &&
                    _idBySpan.TryGetValue(piece.AsSpan(split), out int right))
                    table[PairKey(left, right)] = (id, _scores[id]);
            }
        }
        return table;
    }

    /// <summary>Maps each listed pair to its merged token, the earlier merge first (priority minus the rank; the first listing of a pair wins).</summary>
    private static Dictionary<long, (int, float)> BuildRankedMergeTable(IReadOnlyList<(int Left, int Right, int Merged)> merges)
    {
        var table = new Dictionary<long, (int, float)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
            table.TryAdd(PairKey(merges[rank].Left, merges[rank].Right), (merges[rank].Merged, -rank));
        return table;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>
    /// Encodes <paramref name="text"/> into <paramref name="ids"/> and, when given, each token's
    /// character range in <paramref name="starts"/>/<paramref name="ends"/> (BOS and the dummy prefix are empty ranges at 0).
    /// </summary>
    private void EncodeCore(ReadOnlySpan<char> text, List<int> ids, List<int>? starts, List<int>? ends)
    {
        if (text.Length > (Array.MaxLength - 1) / 3)
            throw new ArgumentOutOfRangeException(nameof(text), text.Length, $"expected at most {(Array.MaxLength - 1) / 3} chars");
        if (AddBos)
        {
            ids.Add(BosId);
            starts?.Add(0);
            ends?.Add(0);
        }
        if (text.IsEmpty) return;
        if (_addedTokens is null)
        {
            EncodeText(text, 0, _addSpacePrefix, ids, starts, ends);
            return;
        }
        var fragments = new List<TextFragment>();
        _addedTokens.Split(text, fragments);
        foreach (TextFragment fragment in fragments)
        {
            if (fragment.IsToken)
            {
                ids.Add(fragment.TokenId);
                starts?.Add(fragment.Start);
                ends?.Add(fragment.Start + fragment.Length);
                continue;
            }
            // llama.cpp prefixes every stretch of text (each follows an added token or starts the text); Metaspace "first" only the start.
            bool prefix = _addSpacePrefix && (!_prefixOnlyAtTextStart || fragment.Start == 0);
            EncodeText(text.Slice(fragment.Start, fragment.Length), fragment.Start, prefix, ids, starts, ends);
        }
    }

    /// <summary>
    /// Encodes a stretch of text that holds no added token, starting at char <paramref name="origin"/> of the whole text
    /// (the ranges it appends are offset by it), with the dummy prefix when <paramref name="addSpacePrefix"/>.
    /// </summary>
    private void EncodeText(ReadOnlySpan<char> text, int origin, bool addSpacePrefix, List<int> ids, List<int>? starts, List<int>? ends)
    {
        char[]? transformed = null;
        if (_spaceSymbol != ' ' && text.Contains(' '))
        {
            // SentencePiece pieces spell a space as '\u2581'; one char for one char keeps offsets unchanged.
            transformed = ArrayPool<char>.Shared.Rent(text.Length);
            text.Replace(transformed, ' ', _spaceSymbol);
            text = transformed.AsSpan(0, text.Length);
        }

        // Initial symbols: the dummy prefix, then one token per codepoint or its UTF-8 bytes.
        // At most 3 byte tokens per UTF-16 char (a BMP char is ≤ 3 UTF-8 bytes, a surrogate pair 4 for 2 chars), plus the prefix.
        int capacity = text.Length * 3 + 1;
        int[] tokenAt = ArrayPool<int>.Shared.Rent(capacity);   // (n,) token id of symbol i
        int[] startAt = ArrayPool<int>.Shared.Rent(capacity);   // (n,) first char of symbol i
        int[] endAt = ArrayPool<int>.Shared.Rent(capacity);     // (n,) char after symbol i
        int[] nextOf = ArrayPool<int>.Shared.Rent(capacity);    // (n,) next live symbol or -1
        int[] prevOf = ArrayPool<int>.Shared.Rent(capacity);    // (n,) previous live symbol or -1
        try
        {
            int count = 0;
            if (addSpacePrefix) { tokenAt[count] = _spaceId; startAt[count] = 0; endAt[count] = 0; count++; }
            Span<byte> utf8 = stackalloc byte[4];
            for (int i = 0; i < text.Length;)
            {
                Rune.DecodeFromUtf16(text[i..], out Rune rune, out int consumed);
                if (_idBySpan.TryGetValue(text.Slice(i, consumed), out int id))
                {
                    tokenAt[count] = id; startAt[count] = i; endAt[count] = i + consumed; count++;
                }
                else
                {
                    int byteCount = rune.EncodeToUtf8(utf8);
                    for (int b = 0; b < byteCount; b++)
                    {
                        tokenAt[count] = _byteTokenIds[utf8[b]]; startAt[count] = i; endAt[count] = i + consumed; count++;
                    }
                }
                i += consumed;
            }

            // Cut the symbol list where no piece can span: between two one-char pieces whose char pair occurs in
            // no piece, no merged token can contain both, so each segment merges on its own with the same result
            // (a smaller heap per segment instead of one over the whole text).
            int segments = 0;
            int[] segmentStart = ArrayPool<int>.Shared.Rent(count + 1);  // (segments,) first symbol of each segment
            try
            {
                for (int s = 0; s < count; s++)
                {
                    bool cutBefore = s == 0 || IsSafeCut(text, tokenAt, startAt, endAt, s);
                    if (cutBefore)
                    {
                        segmentStart[segments++] = s;
                        if (s > 0) nextOf[s - 1] = -1;
                    }
                    prevOf[s] = cutBefore ? -1 : s - 1;
                    nextOf[s] = s + 1 < count ? s + 1 : -1;
                }

                // Max-heap on (score, then leftmost symbol): exactly llama2.c's choice at every step.
                var queue = new PriorityQueue<MergeCandidate, (float Score, int Left)>(MergeOrder.Instance);
                for (int g = 0; g < segments; g++)
                {
                    for (int s = segmentStart[g]; nextOf[s] >= 0; s++) TryEnqueue(queue, tokenAt, s, s + 1);
                    while (queue.TryDequeue(out MergeCandidate candidate, out _))
                    {
                        int left = candidate.Left, right = candidate.Right;
                        if (tokenAt[left] != candidate.LeftToken || nextOf[left] != right || tokenAt[right] != candidate.RightToken)
                            continue; // stale: one side was merged away since this pair was queued
                        tokenAt[left] = candidate.Merged;
                        endAt[left] = endAt[right];
                        tokenAt[right] = -1;
                        nextOf[left] = nextOf[right];
                        if (nextOf[right] >= 0) prevOf[nextOf[right]] = left;
                        if (prevOf[left] >= 0) TryEnqueue(queue, tokenAt, prevOf[left], left);
                        if (nextOf[left] >= 0) TryEnqueue(queue, tokenAt, left, nextOf[left]);
                    }
                    for (int s = segmentStart[g]; s >= 0; s = nextOf[s]) Append(tokenAt[s], startAt[s], endAt[s]);
                }
            }
            finally
            {
                ArrayPool<int>.Shared.Return(segmentStart);
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(tokenAt);
            ArrayPool<int>.Shared.Return(startAt);
            ArrayPool<int>.Shared.Return(endAt);
            ArrayPool<int>.Shared.Return(nextOf);
            ArrayPool<int>.Shared.Return(prevOf);
            if (transformed is not null) ArrayPool<char>.Shared.Return(transformed);
        }

        void Append(int id, int start, int end)
        {
            ids.Add(id);
            starts?.Add(origin + start);
            ends?.Add(origin + end);
        }
    }

/// <summary>Whether symbols <paramref name="s"/>-1 and <paramref name="s"/> are one-char pieces whose pair occurs in no piece.</summary>
    private bool IsSafeCut(ReadOnlySpan<char> text, int[] tokenAt, int[] startAt, int[] endAt, int s)
    {
        int left = s - 1;
        if (endAt[left] - startAt[left] != 1 || endAt[s] - startAt[s] != 1) return false; // prefix, surrogate pair or byte fallback
        if (_pieces[tokenAt[left]].Length != 1 || _pieces[tokenAt[s]].Length != 1) return false;
        return !_pieceBigrams.Contains((uint)text[startAt[left]] << 16 | text[startAt[s]]);
    }

        private void TryEnqueue(PriorityQueue<MergeCandidate, (float Score, int Left)> queue, int[] tokenAt, int left, int right)
    {
        if (_mergeByPair.TryGetValue(PairKey(tokenAt[left], tokenAt[right]), out (int Merged, float Priority) merge))
            queue.Enqueue(new MergeCandidate(left, right, tokenAt[left], tokenAt[right], merge.Merged), (merge.Priority, left));
    }

    private readonly record struct MergeCandidate(int Left, int Right, int LeftToken, int RightToken, int Merged);

    private sealed class MergeOrder : IComparer<(float Score, int Left)>
    {
        public static readonly MergeOrder Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y)
        {
            if (x.Score != y.Score) return x.Score > y.Score ? -1 : 1;
            return x.Left.CompareTo(y.Left);
        }
    }

    /// <summary>Ids with character ranges, cut to the first <see cref="Kept"/> tokens that fit a token budget.</summary>
    private readonly record struct BudgetedEncoding(List<int> Ids, List<int> Starts, List<int> Ends, int Kept, int CharsConsumed);

    private BudgetedEncoding EncodeWithinBudget(ReadOnlySpan<char> input, int maxTokenCount)
    {
        var ids = new List<int>();
        var starts = new List<int>();
        var ends = new List<int>();
        EncodeCore(input, ids, starts, ends);
        int kept = TokenBudget.KeptFromStart(starts, ends, ids.Count, maxTokenCount);
        return new BudgetedEncoding(ids, starts, ends, kept, kept == ids.Count ? input.Length : TokenBudget.CharsUpTo(ends, kept));
    }

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        BudgetedEncoding encoding = EncodeWithinBudget(text is null ? textSpan : text.AsSpan(), settings.MaxTokenCount);
        var tokens = new List<EncodedToken>(encoding.Kept);
        for (int t = 0; t < encoding.Kept; t++)
        {
            int id = encoding.Ids[t];
            tokens.Add(new EncodedToken(id, _pieces[id], new Range(encoding.Starts[t], encoding.Ends[t])));
        }
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = encoding.CharsConsumed };
    }

    /// <inheritdoc/>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        if (settings.MaxTokenCount >= input.Length * 3L + 2)
        {
            // No budget can bite (≤ 3 tokens per char + BOS + prefix): skip the character ranges.
            var all = new List<int>(input.Length / 3 + 2);
            EncodeCore(input, all, null, null);
            return new EncodeResults<int> { Tokens = all, NormalizedText = null, CharsConsumed = input.Length };
        }
        BudgetedEncoding encoding = EncodeWithinBudget(input, settings.MaxTokenCount);
        List<int> ids = encoding.Ids;
        if (encoding.Kept < ids.Count) ids.RemoveRange(encoding.Kept, ids.Count - encoding.Kept);
        return new EncodeResults<int> { Tokens = ids, NormalizedText = null, CharsConsumed = encoding.CharsConsumed };
    }

    /// <inheritdoc/>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        var ids = new List<int>();
        EncodeCore(input, ids, null, null);
        return ids.Count;
    }

    /// <inheritdoc/>
    protected override int GetIndexByTokenCount(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings, bool fromEnd,
        out string? normalizedText, out int tokenCount)
    {
        ReadOnlySpan<char> input = text is null ? textSpan : text.AsSpan();
        normalizedText = null;
        (List<int> ids, List<int> starts, List<int> ends, int kept, int charsConsumed) = EncodeWithinBudget(input, settings.MaxTokenCount);
        if (!fromEnd)
        {
            tokenCount = kept;
            return charsConsumed;
        }
        int first = TokenBudget.FirstKeptFromEnd(starts, ends, ids.Count, settings.MaxTokenCount);
        tokenCount = ids.Count - first;
        return TokenBudget.StartOfKept(starts, first, ids.Count, input.Length);
    }

    /// <summary>
    /// Decodes ids to text as llama2.c prints them: each token's bytes (<c>&lt;0xNN&gt;</c> is the raw byte),
    /// the leading space of a token right after BOS (for SentencePiece vocabularies also of the first token)
    /// dropped, BOS/EOS and control tokens omitted. The bytes of all
    /// tokens are joined before UTF-8 decoding, so characters split over byte tokens come out whole;
    /// an incomplete or invalid sequence becomes U+FFFD.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside 0..<see cref="VocabSize"/>-1.</exception>
    public override string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new ArrayBufferWriter<byte>(256);
        int previous = -1;
        foreach (int id in ids)
        {
            bytes.Write(DecodedBytes(previous, id));
            previous = id;
        }
        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <inheritdoc/>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        Decoder decoder = Encoding.UTF8.GetDecoder();
        char[] chunk = new char[_maxDecodedLength + 4];
        idsConsumed = 0;
        charsWritten = 0;
        int previous = -1;
        foreach (int id in ids)
        {
            ReadOnlySpan<byte> tokenBytes = DecodedBytes(previous, id);
            int produced = decoder.GetChars(tokenBytes, chunk, flush: false);
            if (charsWritten + produced > destination.Length) return OperationStatus.DestinationTooSmall;
            chunk.AsSpan(0, produced).CopyTo(destination[charsWritten..]);
            charsWritten += produced;
            idsConsumed++;
            previous = id;
        }
        int tail = decoder.GetChars(ReadOnlySpan<byte>.Empty, chunk, flush: true);
        if (charsWritten + tail > destination.Length) return OperationStatus.DestinationTooSmall;
        chunk.AsSpan(0, tail).CopyTo(destination[charsWritten..]);
        charsWritten += tail;
        return OperationStatus.Done;
    }

    private ReadOnlySpan<byte> DecodedBytes(int previous, int id)
    {
        if ((uint)id >= (uint)_pieces.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"expected a token id in 0..{_pieces.Length - 1}");
        ReadOnlySpan<byte> bytes = _decodedBytes[id];
        // llama2.c decode(): "following BOS token, sentencepiece decoder strips any leading whitespace";
        // SentencePiece also strips it from the first piece of the text.
        // llama2.c tests the piece text, so the byte token <0x20> keeps its space.
        bool atStart = (_stripSpaceAfterBos && previous == BosId && previous >= 0) || (_stripSpaceAtStart && previous < 0);
        if (atStart && !_isByteToken[id] && bytes.Length > 0 && bytes[0] == (byte)' ') bytes = bytes[1..];
        return bytes;
    }
}
