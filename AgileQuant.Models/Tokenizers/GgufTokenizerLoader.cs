using AgileQuant.Models.Gguf;
using Microsoft.ML.Tokenizers;
using TokenType = AgileQuant.Models.Tokenizers.SpmVocabularyTokenizer.TokenType;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Builds the tokenizer a GGUF file describes in its <c>tokenizer.ggml.*</c> metadata, as llama.cpp reads it
/// (src/llama-vocab.cpp): <c>model = "llama"</c> → SentencePiece <see cref="SpmVocabularyTokenizer"/> (tokens, scores,
/// token_type); <c>model = "gpt2"</c> → byte-level BPE (tokens, merges) with the <see cref="PreTokenizerCatalog"/> row
/// <c>tokenizer.ggml.pre</c> names (GPT-2's when the key is absent); <c>model = "bert"</c> → WordPiece
/// <see cref="WordPieceVocabularyTokenizer"/>. USER_DEFINED tokens written in the text always encode as their ids; CONTROL (and
/// UNKNOWN-type) tokens only when special tokens are parsed.
/// </summary>
public static class GgufTokenizerLoader
{
    /// <summary>Reads the GGUF file at <paramref name="path"/> and builds its tokenizer.</summary>
    /// <param name="path">A GGUF file (a vocabulary-only file is enough).</param>
    /// <param name="addBos">Whether encoding prepends BOS; null uses <c>tokenizer.ggml.add_bos_token</c> (default: true for llama
    /// and for pre-tokenizers llama.cpp adds BOS for, such as llama-bpe; false otherwise; never for bert).</param>
    /// <param name="parseSpecialTokens">Whether control tokens written in the text (<c>&lt;|eot_id|&gt;</c>) encode as their ids;
    /// when false (the default) they encode as plain text.</param>
    /// <exception cref="ModelFormatException">The file or its tokenizer metadata is invalid or of an unsupported model.</exception>
    public static Tokenizer Load(string path, bool? addBos = null, bool parseSpecialTokens = false) => Create(GgufFile.Read(path), addBos, parseSpecialTokens);

    /// <summary>Builds the tokenizer described by <paramref name="gguf"/>'s metadata.</summary>
    /// <param name="gguf">A GGUF header.</param>
    /// <param name="addBos">Whether encoding prepends BOS; null uses <c>tokenizer.ggml.add_bos_token</c>.</param>
    /// <param name="parseSpecialTokens">Whether control tokens written in the text encode as their ids.</param>
    /// <exception cref="ModelFormatException">The tokenizer metadata is missing, inconsistent or of an unsupported model.</exception>
    public static Tokenizer Create(GgufFile gguf, bool? addBos = null, bool parseSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string model = gguf.GetString("tokenizer.ggml.model");
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<int>? types = gguf.TryGetValue("tokenizer.ggml.token_type", out _) ? gguf.GetArray<int>("tokenizer.ggml.token_type") : null;
        if (types is not null && types.Count != tokens.Count && model != "llama")
            throw new ModelFormatException(gguf.FilePath, null, $"expected {tokens.Count} token types (one per token), found {types.Count}");
        if (types is not null && types.Count == tokens.Count) types = TokenTypesAsLlamaCppReadsThem(gguf, tokens, types);
        switch (model)
        {
            case "llama":
                return SpmVocabularyTokenizer.Create(gguf.FilePath, tokens, gguf.GetArray<float>("tokenizer.ggml.scores"), types,
                    TokenId(gguf, "tokenizer.ggml.bos_token_id", 1), TokenId(gguf, "tokenizer.ggml.eos_token_id", 2),
                    TokenId(gguf, "tokenizer.ggml.unknown_token_id", 0),
                    addBos ?? gguf.GetBoolean("tokenizer.ggml.add_bos_token", true),
                    gguf.GetBoolean("tokenizer.ggml.add_space_prefix", true), parseSpecialTokens, RightStripped(gguf));
            case "gpt2":
                return CreateByteLevelBpe(gguf, tokens, types, addBos, parseSpecialTokens);
            case "bert":
                return CreateWordPiece(gguf, tokens, types, parseSpecialTokens);
            default:
                throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.model 'llama', 'gpt2' or 'bert', found '{model}'");
        }
    }

    /// <summary>The pre-tokenizer row <c>tokenizer.ggml.pre</c> names (GPT-2's when absent).</summary>
    /// <exception cref="ModelFormatException">The name is not in <see cref="PreTokenizerCatalog"/>.</exception>
    public static PreTokenizerDescription PreTokenizerOf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        if (!gguf.TryGetValue("tokenizer.ggml.pre", out _)) return PreTokenizerCatalog.Gpt2;
        string pre = gguf.GetString("tokenizer.ggml.pre");
        return PreTokenizerCatalog.FindByName(pre) ?? throw new ModelFormatException(gguf.FilePath, null,
            $"expected tokenizer.ggml.pre to be one of {string.Join(", ", PreTokenizerCatalog.Names)}, found '{pre}' (not supported)");
    }

    private static Tokenizer CreateByteLevelBpe(GgufFile gguf, IReadOnlyList<string> tokens, IReadOnlyList<int>? types, bool? addBos, bool parseSpecialTokens)
    {
        PreTokenizerDescription pre = PreTokenizerOf(gguf);
        var vocabulary = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
        for (int id = 0; id < tokens.Count; id++) vocabulary.TryAdd(tokens[id], id); // first id wins on duplicates
        string? bos = null;
        if (addBos ?? gguf.GetBoolean("tokenizer.ggml.add_bos_token", pre.AddBos))
        {
            int bosId = TokenId(gguf, "tokenizer.ggml.bos_token_id", -1);
            if (bosId < 0 || bosId >= tokens.Count)
                throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.bos_token_id in 0..{tokens.Count - 1} to add BOS, found {bosId}");
            bos = tokens[bosId];
        }
        List<AddedToken> added = [.. SpmVocabularyTokenizer.AddedTokensOfTypes([.. tokens], types, RightStripped(gguf))];
        return ByteLevelBpeTokenizerLoader.CreateByteLevel(gguf.FilePath, vocabulary, gguf.GetArray<string>("tokenizer.ggml.merges"),
            added, parseSpecialTokens, pre, pre.IgnoreMerges, normalizer: null, bos);
    }

    /// <summary>WordPiece (llama.cpp's WPM): lower-casing and accent stripping as <c>tokenizer.ggml.normalizer.*</c> say (default on).</summary>
    private static WordPieceVocabularyTokenizer CreateWordPiece(GgufFile gguf, IReadOnlyList<string> tokens, IReadOnlyList<int>? types, bool parseSpecialTokens)
    {
        int unknown = TokenId(gguf, "tokenizer.ggml.unknown_token_id", 100); // llama.cpp's default for bert
        if (unknown >= tokens.Count)
            throw new ModelFormatException(gguf.FilePath, null, $"tokenizer.ggml.model 'bert': expected tokenizer.ggml.unknown_token_id in 0..{tokens.Count - 1}, found {unknown}");
        bool lowercase = gguf.GetBoolean("tokenizer.ggml.normalizer.lowercase", true);
        return WordPieceVocabularyTokenizer.Create(gguf.FilePath, tokens, types, unknown,
            lowercase, gguf.GetBoolean("tokenizer.ggml.normalizer.strip_accents", lowercase), parseSpecialTokens);
    }

    /// <summary>
    /// Added tokens that also drop the whitespace after them: llama.cpp sets this for Phi-3 (by <c>general.name</c>) on
    /// every special token but <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c> and <c>&lt;|endoftext|&gt;</c>.
    /// </summary>
    private static Func<string, bool>? RightStripped(GgufFile gguf)
    {
        string name = gguf.TryGetValue("general.name", out _) ? gguf.GetString("general.name").ToLowerInvariant() : "";
        if (!name.Contains("phi-3", StringComparison.Ordinal) && !name.Contains("phi3", StringComparison.Ordinal)) return null;
        return token => token is not ("<unk>" or "<s>" or "<|endoftext|>");
    }

    /// <summary>
    /// The special tokens <paramref name="gguf"/> declares: <c>tokenizer.ggml.{bos,eos,eot,eom,unknown,padding}_token_id</c>;
    /// every CONTROL, USER_DEFINED and UNKNOWN-type token by its text (types as llama.cpp corrects them); where the file
    /// declares no end-of-turn or end-of-message id, the first token of llama.cpp's texts for it (<c>&lt;|eot_id|&gt;</c>,
    /// <c>&lt;|im_end|&gt;</c>, <c>&lt;end_of_turn&gt;</c>, …; llama.cpp takes whichever its hash map yields first); and as
    /// further end-of-generation tokens, as llama.cpp has them, the fill-in-the-middle pad, repository and file-separator
    /// tokens (declared by <c>tokenizer.ggml.fim_{pad,rep,sep}_token_id</c> or found by their texts, e.g. Qwen2.5's
    /// <c>&lt;|fim_pad|&gt;</c>, <c>&lt;|repo_name|&gt;</c>, <c>&lt;|file_sep|&gt;</c>) and those llama.cpp's end-of-generation texts name.
    /// </summary>
    /// <exception cref="ModelFormatException">The token list is missing or a declared id is out of range.</exception>
    public static SpecialTokens ReadSpecialTokens(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<int>? types = gguf.TryGetValue("tokenizer.ggml.token_type", out _) ? gguf.GetArray<int>("tokenizer.ggml.token_type") : null;
        if (types is not null && types.Count == tokens.Count) types = TokenTypesAsLlamaCppReadsThem(gguf, tokens, types);
        var byText = new Dictionary<string, int>(StringComparer.Ordinal);
        if (types is not null)
            for (int id = 0; id < Math.Min(tokens.Count, types.Count); id++)
                if (types[id] is (int)TokenType.Control or (int)TokenType.UserDefined or (int)TokenType.Unknown) byText.TryAdd(tokens[id], id);
        int? Declared(string key)
        {
            if (!gguf.TryGetValue(key, out _)) return null;
            int id = TokenId(gguf, key, -1);
            return id < tokens.Count ? id : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a token id in 0..{tokens.Count - 1}, found {id}");
        }
        int? ByText(IEnumerable<string> texts) => texts.Select(t => byText.TryGetValue(t, out int id) ? id : (int?)null).FirstOrDefault(id => id is not null);
        return new SpecialTokens
        {
            Bos = Declared("tokenizer.ggml.bos_token_id") ?? (gguf.GetString("tokenizer.ggml.model") == "bert" ? Declared("tokenizer.ggml.cls_token_id") : null),
            Eos = Declared("tokenizer.ggml.eos_token_id"),
            Eot = Declared("tokenizer.ggml.eot_token_id") ?? ByText(LlamaCppControlTexts[0].Texts),
            Eom = Declared("tokenizer.ggml.eom_token_id") ?? ByText(LlamaCppControlTexts[1].Texts),
            Unknown = Declared("tokenizer.ggml.unknown_token_id"),
            Padding = Declared("tokenizer.ggml.padding_token_id"),
            ByText = byText,
            OtherEndOfGeneration = new[]
                {
                    Declared("tokenizer.ggml.fim_pad_token_id") ?? ByText(LlamaCppControlTexts[5].Texts),
                    Declared("tokenizer.ggml.fim_rep_token_id") ?? ByText(LlamaCppControlTexts[6].Texts),
                    Declared("tokenizer.ggml.fim_sep_token_id") ?? ByText(LlamaCppControlTexts[7].Texts),
                }.OfType<int>()
                .Concat(LlamaCppEndOfGenerationTexts.Where(byText.ContainsKey).Select(t => byText[t]).Where(id => types is null || types[id] == (int)TokenType.Control))
                .Distinct().ToArray(),
        };
    }

    /// <summary>
    /// The token types after llama.cpp's corrections by token text (<c>llama_vocab::impl::load</c>): end-of-turn,
    /// end-of-generation and fill-in-the-middle tokens that conversion left USER_DEFINED or NORMAL become CONTROL (so
    /// they are parsed from text only when asked), unless the file declares that kind's id; gpt-oss's channel tokens
    /// become USER_DEFINED; and the two workarounds for vocabularies where <c>&lt;|end|&gt;</c> or <c>&lt;/s&gt;</c> are
    /// not end tokens.
    /// </summary>
    private static IReadOnlyList<int> TokenTypesAsLlamaCppReadsThem(GgufFile gguf, IReadOnlyList<string> tokens, IReadOnlyList<int> types)
    {
        int[] corrected = [.. types];
        var idByText = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
        for (int id = 0; id < tokens.Count; id++) idByText.TryAdd(tokens[id], id);
        void SetControl(string text)
        {
            if (idByText.TryGetValue(text, out int id)) corrected[id] = (int)TokenType.Control;
        }
        void SetType(string text, TokenType type)
        {
            if (idByText.TryGetValue(text, out int id)) corrected[id] = (int)type;
        }
        foreach ((string[] keys, string[] texts) in LlamaCppControlTexts)
            if (!keys.Any(key => gguf.TryGetValue(key, out _)))
                foreach (string text in texts) SetControl(text);
        foreach (string text in LlamaCppEndOfGenerationTexts) SetControl(text);
        foreach (string text in (string[])["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]) SetType(text, TokenType.UserDefined);
        if ((idByText.ContainsKey("<|return|>") && idByText.ContainsKey("<|call|>") || idByText.ContainsKey("<|calls|>") && idByText.ContainsKey("<|flush|>")))
            SetType("<|end|>", TokenType.UserDefined);
        if (idByText.ContainsKey("<|tool_response>")) SetType("</s>", TokenType.Normal);
        return corrected;
    }

    // llama.cpp (src/llama-vocab.cpp, commit 00ad355): texts it takes for an end-of-turn, end-of-message or
    // fill-in-the-middle token when the file declares none of that kind (keys), and marks CONTROL.
    private static readonly (string[] Keys, string[] Texts)[] LlamaCppControlTexts =
    [
        (["tokenizer.ggml.eot_token_id"], ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
            "[EOT]", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "<end_of_utterance>"]),
        (["tokenizer.ggml.eom_token_id"], ["<|eom_id|>"]),
        (["tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"],
            ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>", "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"]),
        (["tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"],
            ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uFF5Cfim\u2581hole\uFF5C>", "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"]),
        (["tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"],
            ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uFF5Cfim\u2581end\uFF5C>", "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>"]),
        (["tokenizer.ggml.fim_pad_token_id"], ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
        (["tokenizer.ggml.fim_rep_token_id"], ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
        (["tokenizer.ggml.fim_sep_token_id"], ["<|file_sep|>"]),
    ];

    // llama.cpp's end-of-generation texts (same source), marked CONTROL whatever the file says.
    private static readonly string[] LlamaCppEndOfGenerationTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
        "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "[e~[",
    ];

    private static int TokenId(GgufFile gguf, string key, int fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        long id = gguf.GetInteger(key);
        return id is >= 0 and <= int.MaxValue
            ? (int)id
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a token id, found {id}");
    }
}
