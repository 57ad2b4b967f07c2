using System.Text;

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

    private SpmVocabularyTokenizer(ScoredVocabulary vocabulary, bool addBos) : base(vocabulary, addBos) { }

    /// <summary>
    /// Loads a SentencePiece BPE <c>tokenizer.model</c> (as shipped with LLaMA checkpoints) into this tokenizer.
    /// Unlike Microsoft.ML.Tokenizers' LlamaTokenizer, which splits " VIIIs" differently, this reproduces
    /// Google's sentencepiece on WikiText-2 exactly.
    /// </summary>
    /// <param name="path">The tokenizer.model file.</param>
    /// <param name="addBos">Whether encoding prepends BOS.</param>
    /// <exception cref="ModelFormatException">The file is not a protobuf ModelProto, is not a BPE model, or normalizes
    /// text (only the <c>identity</c> normalizer without whitespace removal is supported).</exception>
    public static SpmVocabularyTokenizer LoadSentencePieceModel(string path, bool addBos = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        SentencePieceModelReader.Model model = SentencePieceModelReader.Read(path);
        if (model.ModelType != 2)
            throw new ModelFormatException(path, null, $"expected trainer_spec.model_type BPE (2), found {model.ModelType} (not supported)");
        if (model.NormalizerName != "identity" || model.RemoveExtraWhitespaces || !model.EscapeWhitespaces)
            throw new ModelFormatException(path, null,
                $"expected the identity normalizer, whitespace kept and escaped, found '{model.NormalizerName}' " +
                $"(remove_extra_whitespaces {model.RemoveExtraWhitespaces}, escape_whitespaces {model.EscapeWhitespaces}; not supported)");
        return Create(path, model.Pieces, model.Scores, model.Types, model.BosId, model.EosId, model.UnknownId, addBos, model.AddDummyPrefix);
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
    /// <param name="addSpacePrefix">Whether a <c>▁</c> is prepended to non-empty text.</param>
    /// <exception cref="ModelFormatException">Lengths differ, an id is out of range, a score is NaN or a type is unknown.</exception>
    public static SpmVocabularyTokenizer Create(string sourcePath, IReadOnlyList<string> pieces, IReadOnlyList<float> scores,
        IReadOnlyList<int>? tokenTypes, int bosId, int eosId, int unknownId, bool addBos, bool addSpacePrefix = true)
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
            if ((uint)id >= (uint)count)
                throw new ModelFormatException(sourcePath, null, $"expected the {name} token id in 0..{count - 1}, found {id}");

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
        decoded[bosId] = decoded[eosId] = [];

        var vocabulary = new ScoredVocabulary(pieceArray, decoded, scoreArray, matchable, byteTokenIds, SpaceSymbol,
            addSpacePrefix, StripSpaceAtStart: true, MergeFloor: float.NegativeInfinity, bosId, eosId);
        return new SpmVocabularyTokenizer(vocabulary, addBos);
    }
}
