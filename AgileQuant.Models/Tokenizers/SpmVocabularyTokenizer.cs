using System.Text;
using System.Text.Json;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// SentencePiece BPE over a vocabulary given as pieces, scores and token types — the form of GGUF
/// <c>tokenizer.ggml.model = "llama"</c> (llama.cpp <c>LLAMA_VOCAB_TYPE_SPM</c>). Pieces spell a space as
/// <c>▁</c> (U+2581); text spaces become <c>▁</c>, a <c>▁</c> is prepended when <c>add_space_prefix</c>, and
/// characters missing from the vocabulary fall back to the <c>&lt;0xNN&gt;</c> byte tokens.
/// </summary>
/// <remarks>
/// As in llama2.c, a character missing from the vocabulary becomes byte tokens before merging; llama.cpp
/// could still merge it into a longer piece. The two differ only for vocabularies that lack a single
/// character which occurs inside a longer piece (SentencePiece vocabularies hold every such character).
/// </remarks>
public sealed class SpmVocabularyTokenizer : ScoredMergeTokenizer
{
    /// <summary>Token type codes of llama.cpp (<c>llama_token_type</c>), as stored in GGUF <c>tokenizer.ggml.token_type</c>.</summary>
    public enum TokenType
    {
        /// <summary>Not specified.</summary>
        Undefined = 0,
        /// <summary>Ordinary piece.</summary>
        Normal = 1,
        /// <summary>The unknown-token placeholder.</summary>
        Unknown = 2,
        /// <summary>Control token such as BOS or EOS; never produced from text, decodes to nothing.</summary>
        Control = 3,
        /// <summary>User-defined piece.</summary>
        UserDefined = 4,
        /// <summary>Reserved, unused slot.</summary>
        Unused = 5,
        /// <summary>Byte-fallback token <c>&lt;0xNN&gt;</c>.</summary>
        Byte = 6,
    }

    private const char SpaceSymbol = '\u2581';

    private SpmVocabularyTokenizer(ScoredVocabulary vocabulary, bool addBos, AddedTokenMatcher? addedTokens)
        : base(vocabulary, addBos, addedTokens) { }

    /// <summary>
    /// Loads a SentencePiece BPE <c>tokenizer.model</c> (as shipped with LLaMA checkpoints) into this tokenizer.
    /// Unlike Microsoft.ML.Tokenizers' LlamaTokenizer, which splits " VIIIs" differently, this reproduces
    /// Google's sentencepiece on WikiText-2 exactly.
    /// </summary>
    /// <param name="path">The tokenizer.model file.</param>
    /// <param name="addBos">Whether encoding prepends BOS.</param>
    /// <param name="parseSpecialTokens">Whether control tokens written in the text (<c>&lt;s&gt;</c>) encode as their ids;
    /// when false they encode as plain text. User-defined pieces always encode as their ids.</param>
    /// <exception cref="ModelFormatException">The file is not a protobuf ModelProto, is not a BPE model, or normalizes
    /// text (only the <c>identity</c> normalizer without whitespace removal is supported).</exception>
    public static SpmVocabularyTokenizer LoadSentencePieceModel(string path, bool addBos = true, bool parseSpecialTokens = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        SentencePieceModelReader.Model model = SentencePieceModelReader.Read(path);
        if (model.ModelType != 2)
            throw new ModelFormatException(path, null, $"expected trainer_spec.model_type BPE (2), found {model.ModelType} (not supported)");
        if (model.NormalizerName != "identity" || model.RemoveExtraWhitespaces || !model.EscapeWhitespaces)
            throw new ModelFormatException(path, null,
                $"expected the identity normalizer, whitespace kept and escaped, found '{model.NormalizerName}' " +
                $"(remove_extra_whitespaces {model.RemoveExtraWhitespaces}, escape_whitespaces {model.EscapeWhitespaces}; not supported)");
        return Create(path, model.Pieces, model.Scores, model.Types, model.BosId, model.EosId, model.UnknownId, addBos, model.AddDummyPrefix, parseSpecialTokens);
    }

    /// <summary>Builds the tokenizer, validating that all per-token arrays agree and all ids are in range.</summary>
    /// <param name="sourcePath">The file the vocabulary came from, for error messages.</param>
    /// <param name="pieces">(V,) pieces.</param>
    /// <param name="scores">(V,) scores (higher merges first).</param>
    /// <param name="tokenTypes">(V,) <see cref="TokenType"/> codes, or null to treat every piece as normal.</param>
    /// <param name="bosId">Beginning-of-sequence token.</param>
    /// <param name="eosId">End-of-sequence token.</param>
    /// <param name="unknownId">Token used for a byte that has no byte token.</param>
    /// <param name="addBos">Whether encoding prepends BOS.</param>
    /// <param name="addSpacePrefix">Whether a <c>▁</c> is prepended to non-empty text (and to text after an added token).</param>
    /// <param name="parseSpecialTokens">Whether control and unknown-type tokens written in the text encode as their ids;
    /// when false they encode as plain text. User-defined tokens always encode as their ids (llama.cpp's rule).</param>
    /// <exception cref="ModelFormatException">Lengths differ, an id is out of range, a score is NaN or a type is unknown.</exception>
    public static SpmVocabularyTokenizer Create(string sourcePath, IReadOnlyList<string> pieces, IReadOnlyList<float> scores,
        IReadOnlyList<int>? tokenTypes, int bosId, int eosId, int unknownId, bool addBos, bool addSpacePrefix = true, bool parseSpecialTokens = false) =>
        Create(sourcePath, pieces, scores, tokenTypes, bosId, eosId, unknownId, addBos, addSpacePrefix, parseSpecialTokens, rightStripped: null);

    /// <summary>As the public <c>Create</c>; <paramref name="rightStripped"/> picks added tokens that also drop the whitespace after them.</summary>
    internal static SpmVocabularyTokenizer Create(string sourcePath, IReadOnlyList<string> pieces, IReadOnlyList<float> scores,
        IReadOnlyList<int>? tokenTypes, int bosId, int eosId, int unknownId, bool addBos, bool addSpacePrefix, bool parseSpecialTokens,
        Func<string, bool>? rightStripped)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        var layout = new Layout(addSpacePrefix, PrefixOnlyAtTextStart: false, StripLeadingSpace: true, Merges: null);
        return Create(sourcePath, pieces, scores, tokenTypes, bosId, eosId, unknownId, addBos, layout,
            tokens => AddedTokenMatcher.Create(AddedTokensOfTypes(tokens, tokenTypes, rightStripped), parseSpecialTokens));
    }

    /// <summary>How text becomes symbols and pieces merge, beyond the vocabulary itself.</summary>
    /// <param name="AddSpacePrefix">Whether a <c>▁</c> goes before text.</param>
    /// <param name="PrefixOnlyAtTextStart">Whether only text at the very start gets it (not text after an added token).</param>
    /// <param name="StripLeadingSpace">Whether decoding drops the leading space of the first token and of the token after BOS.</param>
    /// <param name="Merges">Ranked merges (left, right, merged) for a BPE; null merges pieces by score.</param>
    internal readonly record struct Layout(bool AddSpacePrefix, bool PrefixOnlyAtTextStart, bool StripLeadingSpace,
        IReadOnlyList<(int Left, int Right, int Merged)>? Merges);

    /// <summary>Builds the tokenizer, validating that all per-token arrays agree and all ids are in range (BOS and EOS may be -1 for none).</summary>
    internal static SpmVocabularyTokenizer Create(string sourcePath, IReadOnlyList<string> pieces, IReadOnlyList<float> scores,
        IReadOnlyList<int>? tokenTypes, int bosId, int eosId, int unknownId, bool addBos, Layout layout,
        Func<string[], AddedTokenMatcher?> addedTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentNullException.ThrowIfNull(pieces);
        ArgumentNullException.ThrowIfNull(scores);
        int count = pieces.Count;
        if (count == 0) throw new ModelFormatException(sourcePath, null, "expected at least one token, found none");
        if (scores.Count != count)
            throw new ModelFormatException(sourcePath, null, $"expected {count} scores (one per token), found {scores.Count}");
        if (tokenTypes is not null && tokenTypes.Count != count)
            throw new ModelFormatException(sourcePath, null, $"expected {count} token types (one per token), found {tokenTypes.Count}");
        foreach ((string name, int id) in new[] { ("BOS", bosId), ("EOS", eosId), ("unknown", unknownId) })
            if ((uint)id >= (uint)count && !(id == -1 && name != "unknown" && layout.Merges is not null))
                throw new ModelFormatException(sourcePath, null, $"expected the {name} token id in 0..{count - 1}, found {id}");
        if (addBos && bosId < 0)
            throw new ModelFormatException(sourcePath, null, "expected a BOS token to prepend, found none");

        string[] pieceArray = new string[count];
        float[] scoreArray = new float[count];
        byte[][] decoded = new byte[count][];
        bool[] matchable = new bool[count];
        int[] byteTokenIds = new int[256];
        Array.Fill(byteTokenIds, -1);
        for (int id = 0; id < count; id++)
        {
            string piece = pieces[id] ?? throw new ModelFormatException(sourcePath, null, $"token {id}: expected a piece, found null");
            float score = scores[id];
            if (float.IsNaN(score)) throw new ModelFormatException(sourcePath, null, $"token {id}: expected a score, found NaN");
            int typeCode = tokenTypes?[id] ?? (int)TokenType.Normal;
            if (typeCode < 0 || typeCode > (int)TokenType.Byte)
                throw new ModelFormatException(sourcePath, null, $"token {id}: expected a token type 0..6, found {typeCode}");
            var type = (TokenType)typeCode;
            pieceArray[id] = piece;
            scoreArray[id] = score;
            byte? byteValue = ByteTokenValue(piece);
            if (byteValue is byte b && (type == TokenType.Byte || tokenTypes is null) && byteTokenIds[b] < 0) byteTokenIds[b] = id;
            matchable[id] = type is TokenType.Normal or TokenType.UserDefined or TokenType.Undefined && !(tokenTypes is null && byteValue is not null);
            decoded[id] = type switch
            {
                TokenType.Control or TokenType.Unused => [],
                TokenType.Byte when byteValue is byte value => [value],
                _ => Encoding.UTF8.GetBytes(piece.Replace(SpaceSymbol, ' ')),
            };
        }
        for (int b = 0; b < 256; b++)
            if (byteTokenIds[b] < 0) byteTokenIds[b] = unknownId;
        if (bosId >= 0) decoded[bosId] = [];
        if (eosId >= 0) decoded[eosId] = [];
        if (layout.Merges is not null)
            foreach ((int left, int right, int merged) in layout.Merges)
                if ((uint)left >= (uint)count || (uint)right >= (uint)count || (uint)merged >= (uint)count)
                    throw new ModelFormatException(sourcePath, null, $"expected merges of token ids in 0..{count - 1}, found ({left}, {right}) -> {merged}");

        var vocabulary = new ScoredVocabulary(pieceArray, decoded, scoreArray, matchable, byteTokenIds, SpaceSymbol,
            layout.AddSpacePrefix, StripSpaceAtStart: layout.StripLeadingSpace, MergeFloor: float.NegativeInfinity, bosId, eosId,
            layout.Merges, StripSpaceAfterBos: layout.StripLeadingSpace, PrefixOnlyAtTextStart: layout.PrefixOnlyAtTextStart);
        return new SpmVocabularyTokenizer(vocabulary, addBos, addedTokens(pieceArray));
    }

    /// <summary>
    /// Builds the SentencePiece-style BPE of a Hugging Face <c>tokenizer.json</c> (<c>model.byte_fallback</c> true: Gemma,
    /// Llama 2, Mistral, Phi-3): pieces spell a space as <c>▁</c> (a <c>Replace</c> normalizer or a <c>Metaspace</c>
    /// pre-tokenizer), a <c>▁</c> goes before the text where a <c>Prepend</c> normalizer or Metaspace's
    /// <c>prepend_scheme</c> asks for it, listed pairs merge by rank, characters missing from the vocabulary fall back
    /// to <c>&lt;0xNN&gt;</c> byte tokens, and <c>added_tokens</c> are cut out first.
    /// </summary>
    internal static SpmVocabularyTokenizer FromTokenizerJson(string path, JsonElement root, string? bosText, string? eosText, bool addBos, bool parseSpecialTokens)
    {
        JsonElement model = TokenizerJson.Model(path, root);
        foreach (string option in new[] { "continuing_subword_prefix", "end_of_word_suffix", "dropout" })
            if (model.TryGetProperty(option, out JsonElement value) && value.ValueKind is not JsonValueKind.Null and not JsonValueKind.Undefined)
                throw new ModelFormatException(path, null, $"expected model.{option} to be null, found {value} (not supported)");
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement))
            throw new ModelFormatException(path, null, "expected model.vocab, found none");
        Dictionary<string, int> vocabulary = ByteLevelBpeTokenizerLoader.ReadVocabularyObject(path, vocabElement, "model.vocab");
        List<AddedToken> added = TokenizerJson.AddedTokens(path, root);
        int count = Math.Max(vocabulary.Count == 0 ? 0 : vocabulary.Values.Max(), added.Count == 0 ? 0 : added.Max(t => t.Id)) + 1;
        if (count > 1 << 24) throw new ModelFormatException(path, null, $"expected token ids below {1 << 24}, found {count - 1}");
        string[] pieces = new string[count];
        int[] types = new int[count];
        Array.Fill(pieces, "");
        Array.Fill(types, (int)TokenType.Unused);
        foreach ((string piece, int id) in vocabulary)
        {
            pieces[id] = piece;
            types[id] = (int)(ByteTokenValue(piece) is null ? TokenType.Normal : TokenType.Byte);
        }
        foreach (AddedToken token in added)
        {
            if (pieces[token.Id].Length > 0 && pieces[token.Id] != token.Content)
                throw new ModelFormatException(path, null, $"added token {token.Id}: expected '{pieces[token.Id]}' as in model.vocab, found '{token.Content}'");
            pieces[token.Id] = token.Content;
            types[token.Id] = (int)(token.Special ? TokenType.Control : TokenType.UserDefined);
            vocabulary.TryAdd(token.Content, token.Id);
        }

        List<string> mergeTexts = TokenizerJson.Merges(path, model);
        var merges = new List<(int, int, int)>(mergeTexts.Count);
        for (int i = 0; i < mergeTexts.Count; i++)
        {
            int space = mergeTexts[i].IndexOf(' ');
            string left = mergeTexts[i][..space], right = mergeTexts[i][(space + 1)..];
            if (!vocabulary.TryGetValue(left, out int l) || !vocabulary.TryGetValue(right, out int r) || !vocabulary.TryGetValue(left + right, out int m))
                throw new ModelFormatException(path, null, $"merge {i}: expected '{left}', '{right}' and their concatenation in the vocabulary, found one missing");
            merges.Add((l, r, m));
        }

        (bool prefix, bool onlyAtStart) = ReadSpaceHandling(path, root);
        bool strip = TokenizerJson.DecoderSteps(root).Any(step => TokenizerJson.TypeOf(step) switch
        {
            "Strip" => step.TryGetProperty("start", out JsonElement start) && start.ValueKind == JsonValueKind.Number && start.GetInt32() > 0,
            "Metaspace" => prefix,
            _ => false,
        });
        int Id(string? text) => text is not null && vocabulary.TryGetValue(text, out int id) ? id : -1;
        int unknown = model.TryGetProperty("unk_token", out JsonElement unk) && unk.ValueKind == JsonValueKind.String ? Id(unk.GetString()) : -1;
        if (unknown < 0)
        {
            // Without an unknown token every byte needs its <0xNN> token (the fallback of any character).
            int missing = Enumerable.Range(0, 256).FirstOrDefault(b => Id($"<0x{b:X2}>") < 0, -1);
            if (missing >= 0)
                throw new ModelFormatException(path, null, $"expected model.unk_token or all 256 byte tokens, found neither (<0x{missing:X2}> missing)");
            unknown = Id("<0x00>");
        }
        var layout = new Layout(prefix, onlyAtStart, strip, merges);
        return Create(path, pieces, new float[count], types, Id(bosText), Id(eosText), unknown, addBos, layout,
            _ => AddedTokenMatcher.Create(added, parseSpecialTokens));
    }

    /// <summary>Whether spaces become ▁ (required), and where a ▁ goes before the text: (prefix, only at the very start).</summary>
    internal static (bool Prefix, bool OnlyAtStart) ReadSpaceHandling(string path, JsonElement root)
    {
        bool replaced = false, prefix = false, onlyAtStart = false;
        foreach (JsonElement step in TokenizerJson.NormalizerSteps(root))
        {
            string? type = TokenizerJson.TypeOf(step);
            if (type == "Replace" && IsSpaceToMetaspace(step, "pattern", "content")) replaced = true;
            else if (type == "Prepend" && step.TryGetProperty("prepend", out JsonElement p) && p.ValueKind == JsonValueKind.String && p.GetString() == "\u2581") prefix = true;
            else throw new ModelFormatException(path, null, $"expected normalizer steps Replace(' ' → '▁') and Prepend('▁'), found {type ?? step.ValueKind.ToString()} (not supported)");
        }
        foreach (JsonElement step in TokenizerJson.PreTokenizerSteps(root))
        {
            switch (TokenizerJson.TypeOf(step))
            {
                case "Metaspace":
                    if (!step.TryGetProperty("replacement", out JsonElement replacement) || replacement.ValueKind != JsonValueKind.String || replacement.GetString() != "\u2581")
                        throw new ModelFormatException(path, null, "expected Metaspace.replacement '▁', found another (not supported)");
                    if (step.TryGetProperty("split", out JsonElement split) && split.ValueKind == JsonValueKind.True)
                        throw new ModelFormatException(path, null, "expected Metaspace.split = false, found true (not supported)");
                    string scheme = step.TryGetProperty("prepend_scheme", out JsonElement s) && s.ValueKind == JsonValueKind.String ? s.GetString()!
                        : step.TryGetProperty("add_prefix_space", out JsonElement add) && add.ValueKind == JsonValueKind.False ? "never" : "always";
                    replaced = true;
                    prefix = scheme != "never";
                    onlyAtStart = scheme == "first";
                    break;
                case "Split" when replaced && IsSpaceSplit(step):
                    break; // splits on ' ' after the normalizer replaced every ' ': nothing to split
                default:
                    throw new ModelFormatException(path, null, $"expected pre_tokenizer Metaspace (split false) or none, found {TokenizerJson.TypeOf(step) ?? step.ValueKind.ToString()} (not supported)");
            }
        }
        if (!replaced)
            throw new ModelFormatException(path, null, "expected spaces written as '▁' (a Replace normalizer or a Metaspace pre-tokenizer), found neither (not supported)");
        return (prefix, onlyAtStart);
    }

    private static bool IsSpaceToMetaspace(JsonElement step, string patternName, string contentName) =>
        step.TryGetProperty(patternName, out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object &&
        pattern.TryGetProperty("String", out JsonElement literal) && literal.ValueKind == JsonValueKind.String && literal.GetString() == " " &&
        step.TryGetProperty(contentName, out JsonElement content) && content.ValueKind == JsonValueKind.String && content.GetString() == "\u2581";

    private static bool IsSpaceSplit(JsonElement step) =>
        step.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object &&
        pattern.TryGetProperty("String", out JsonElement literal) && literal.ValueKind == JsonValueKind.String && literal.GetString() == " ";

    /// <summary>
    /// The tokens text may spell as a whole: user-defined ones always, control and unknown-type ones when special
    /// tokens are parsed (llama.cpp <c>tokenizer_st_partition</c>).
    /// </summary>
    internal static IEnumerable<AddedToken> AddedTokensOfTypes(string[] pieces, IReadOnlyList<int>? tokenTypes, Func<string, bool>? rightStripped)
    {
        if (tokenTypes is null) yield break;
        for (int id = 0; id < pieces.Length; id++)
        {
            var type = (TokenType)tokenTypes[id];
            if (type is TokenType.UserDefined or TokenType.Control or TokenType.Unknown)
                yield return new AddedToken(pieces[id], id, Special: type != TokenType.UserDefined, RStrip: rightStripped?.Invoke(pieces[id]) ?? false);
        }
    }
}
