using AgileQuant.Core;
using AgileQuant.Models.Tokenizers;
using TokenType = AgileQuant.Models.Tokenizers.SpmVocabularyTokenizer.TokenType;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// A vocabulary as GGUF stores it under <c>tokenizer.ggml.*</c>: SentencePiece (model <c>llama</c>, llama.cpp's SPM
/// vocabulary: one piece, score and <see cref="TokenType"/> per token id) or byte-level BPE (model <c>gpt2</c>: one
/// token and type per id, the merges, and the pre-tokenizer <c>tokenizer.ggml.pre</c> names; see <see cref="BytePairEncoding"/>).
/// </summary>
/// <param name="Tokens">(V,) pieces; SentencePiece spells a space <c>▁</c> and byte tokens <c>&lt;0xNN&gt;</c>, byte-level BPE spells bytes as GPT-2's printable characters.</param>
/// <param name="Scores">(V,) merge scores (SentencePiece); empty for byte-level BPE, which ranks merges by their order.</param>
/// <param name="TokenTypes">(V,) <see cref="TokenType"/> codes.</param>
/// <param name="BosId">Beginning-of-sequence token.</param>
/// <param name="EosId">End-of-sequence token.</param>
/// <param name="UnknownId">Unknown token; −1: none (byte-level BPE has none).</param>
public sealed partial record GgufVocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<float> Scores, IReadOnlyList<int> TokenTypes, int BosId, int EosId, int UnknownId)
{
    /// <summary>SentencePiece's <c>tokenizer.ggml.model</c>.</summary>
    public const string SentencePieceModel = "llama";

    /// <summary>Byte-level BPE's <c>tokenizer.ggml.model</c>.</summary>
    public const string BytePairModel = "gpt2";

    /// <summary><c>tokenizer.ggml.model</c>: <see cref="SentencePieceModel"/> (the default) or <see cref="BytePairModel"/>.</summary>
    public string Model { get; init; } = SentencePieceModel;

    /// <summary><c>tokenizer.ggml.merges</c> of a byte-level BPE vocabulary (<c>"left right"</c>, highest priority first); null for SentencePiece.</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>, the pre-tokenizer of a byte-level BPE vocabulary (a <see cref="PreTokenizerCatalog"/> name such as <c>llama-bpe</c> or <c>qwen2</c>); null: not written (GPT-2's).</summary>
    public string? PreTokenizer { get; init; }

    /// <summary><c>tokenizer.ggml.add_bos_token</c>: whether encoding prepends BOS.</summary>
    public bool AddBos { get; init; } = true;

    /// <summary><c>tokenizer.ggml.eot_token_id</c>, the end-of-turn token; null: not written (llama.cpp then finds it by its text).</summary>
    public int? EndOfTurnId { get; init; }

    /// <summary><c>tokenizer.ggml.padding_token_id</c>; null: not written.</summary>
    public int? PaddingId { get; init; }

    /// <summary>
    /// A byte-level BPE vocabulary (<c>tokenizer.ggml.model = gpt2</c>, as llama.cpp's <c>convert_hf_to_gguf.py</c> writes
    /// Llama 3's, Qwen's or GPT-2's): tokens and types per id, merges in priority order, the pre-tokenizer's name.
    /// </summary>
    /// <exception cref="ArgumentException">The types are not one per token, or <paramref name="preTokenizer"/> is not a <see cref="PreTokenizerCatalog"/> name.</exception>
    public static GgufVocabulary BytePairEncoding(IReadOnlyList<string> tokens, IReadOnlyList<int> tokenTypes, IReadOnlyList<string> merges, string preTokenizer,
        int bosId, int eosId, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(tokenTypes);
        ArgumentNullException.ThrowIfNull(merges);
        if (tokenTypes.Count != tokens.Count)
            throw new ArgumentException($"Expected one token type per token ({tokens.Count}), found {tokenTypes.Count}.", nameof(tokenTypes));
        if (PreTokenizerCatalog.FindByName(preTokenizer) is null)
            throw new ArgumentException($"Expected a pre-tokenizer name, one of {string.Join(", ", PreTokenizerCatalog.Names)}; found '{preTokenizer}'.", nameof(preTokenizer));
        return new GgufVocabulary(tokens, [], tokenTypes, bosId, eosId, -1) { Model = BytePairModel, Merges = merges, PreTokenizer = preTokenizer, AddBos = addBos };
    }

    /// <summary>
    /// The vocabulary <paramref name="gguf"/> stores (a model or a vocabulary-only file): SentencePiece or byte-level BPE,
    /// with its BOS, EOS, unknown, end-of-turn and padding ids and <c>add_bos_token</c> as the file states them
    /// and <c>add_space_prefix</c> (defaults as llama.cpp's: BOS 1, EOS 2, unknown 0 for SentencePiece; add BOS for SentencePiece and the pre-tokenizers llama.cpp adds it for).
    /// </summary>
    /// <exception cref="ModelFormatException">The file's tokenizer model is neither <c>llama</c> nor <c>gpt2</c>, or a key is missing or mistyped.</exception>
    public static GgufVocabulary FromGguf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string model = gguf.GetString("tokenizer.ggml.model");
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<int> types = gguf.GetArray<int>("tokenizer.ggml.token_type");
        int? Id(string key) => gguf.TryGetValue(key, out _) ? (int)gguf.GetInteger(key) : null;
        GgufVocabulary vocabulary = model switch
        {
            SentencePieceModel => new GgufVocabulary(tokens, gguf.GetArray<float>("tokenizer.ggml.scores"), types,
                Id("tokenizer.ggml.bos_token_id") ?? 1, Id("tokenizer.ggml.eos_token_id") ?? 2, Id("tokenizer.ggml.unknown_token_id") ?? 0)
            { AddBos = gguf.GetBoolean("tokenizer.ggml.add_bos_token", true), AddSpacePrefix = gguf.GetBoolean("tokenizer.ggml.add_space_prefix", true) },
            BytePairModel => new GgufVocabulary(tokens, [], types, Id("tokenizer.ggml.bos_token_id") ?? -1, Id("tokenizer.ggml.eos_token_id") ?? -1, -1)
            {
                Model = BytePairModel,
                Merges = gguf.GetArray<string>("tokenizer.ggml.merges"),
                PreTokenizer = gguf.TryGetValue("tokenizer.ggml.pre", out _) ? gguf.GetString("tokenizer.ggml.pre") : null,
                AddBos = gguf.GetBoolean("tokenizer.ggml.add_bos_token", GgufTokenizerLoader.PreTokenizerOf(gguf).AddBos),
            },
            _ => throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.model '{SentencePieceModel}' or '{BytePairModel}' to copy its vocabulary, found '{model}'"),
        };
        return vocabulary with { EndOfTurnId = Id("tokenizer.ggml.eot_token_id"), PaddingId = Id("tokenizer.ggml.padding_token_id") };
    }

    /// <summary>Adds the vocabulary's <c>tokenizer.ggml.*</c> keys to <paramref name="w"/>.</summary>
    internal void AddTo(GgufWriter w)
    {
        w.AddString("tokenizer.ggml.model", Model);
        if (PreTokenizer is not null) w.AddString("tokenizer.ggml.pre", PreTokenizer);
        w.AddArray("tokenizer.ggml.tokens", Tokens);
        if (Scores.Count > 0) w.AddArray("tokenizer.ggml.scores", Scores);
        w.AddArray("tokenizer.ggml.token_type", TokenTypes);
        if (Merges is not null) w.AddArray("tokenizer.ggml.merges", Merges);
        if (BosId >= 0) w.AddUInt32("tokenizer.ggml.bos_token_id", (uint)BosId);
        if (EosId >= 0) w.AddUInt32("tokenizer.ggml.eos_token_id", (uint)EosId);
        if (UnknownId >= 0) w.AddUInt32("tokenizer.ggml.unknown_token_id", (uint)UnknownId);
        if (EndOfTurnId is int eot) w.AddUInt32("tokenizer.ggml.eot_token_id", (uint)eot);
        if (PaddingId is int padding) w.AddUInt32("tokenizer.ggml.padding_token_id", (uint)padding);
        w.AddBool("tokenizer.ggml.add_bos_token", AddBos);
        w.AddBool("tokenizer.ggml.add_eos_token", false);
        if (Model == SentencePieceModel && !AddSpacePrefix) w.AddBool("tokenizer.ggml.add_space_prefix", false);
    }

    /// <summary>Throws unless the vocabulary has one token, type (and score, for SentencePiece) per row of a <paramref name="vocabSize"/>-token model, and its model's keys.</summary>
    internal void Validate(int vocabSize)
    {
        bool scored = Model == SentencePieceModel;
        if (Tokens.Count != vocabSize || TokenTypes.Count != vocabSize || (scored && Scores.Count != vocabSize))
            throw new AgileQuantException($"GGUF export needs one token per embedding row: expected {vocabSize} tokens, {(scored ? "scores and types" : "and types")}, found {Tokens.Count}, {(scored ? $"{Scores.Count} and " : "")}{TokenTypes.Count}.");
        if (Model is not (SentencePieceModel or BytePairModel))
            throw new AgileQuantException($"GGUF export writes tokenizer.ggml.model '{SentencePieceModel}' or '{BytePairModel}', found '{Model}'.");
        if (Model == BytePairModel && Merges is null) throw new AgileQuantException("GGUF export of a byte-level BPE vocabulary (tokenizer.ggml.model 'gpt2') needs its merges, found none.");
        foreach ((string key, int? id) in new[] { ("bos", (int?)BosId), ("eos", EosId), ("unknown", UnknownId), ("eot", EndOfTurnId), ("padding", PaddingId) })
            if (id is int value && value >= vocabSize)
                throw new AgileQuantException($"GGUF export: tokenizer.ggml.{key}_token_id {value} is outside the {vocabSize}-token vocabulary.");
    }
    /// <summary>
    /// The vocabulary of a scored-merge tokenizer (llama2.c <c>tokenizer.bin</c>, SentencePiece <c>.model</c>, GGUF):
    /// llama2.c's spaces become <c>▁</c>, <c>&lt;0xNN&gt;</c> pieces become byte tokens, BOS and EOS control tokens, the unknown id (0) the unknown token;
    /// padded with unused <c>[PADn]</c> tokens up to <paramref name="vocabSize"/> (llama.cpp needs one token per embedding row).
    /// </summary>
    public static GgufVocabulary FromTokenizer(ScoredMergeTokenizer tokenizer, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, tokenizer.VocabSize);
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            if (id >= tokenizer.VocabSize)
            {
                (tokens[id], scores[id], types[id]) = ($"[PAD{id}]", -1e9f, (int)TokenType.Unused);
                continue;
            }
            // llama2.c's export wrote SentencePiece's ▁ as a plain space; GGUF keeps ▁.
            string piece = tokenizer is Llama2cTokenizer ? tokenizer.GetPiece(id).Replace(' ', '\u2581') : tokenizer.GetPiece(id);
            tokens[id] = piece;
            scores[id] = tokenizer.GetScore(id);
            types[id] = (int)(id == tokenizer.BosId || id == tokenizer.EosId ? TokenType.Control
                : id == 0 && piece == "<unk>" ? TokenType.Unknown
                : IsBytePiece(piece) ? TokenType.Byte
                : TokenType.Normal);
        }
        return new GgufVocabulary(tokens, scores, types, tokenizer.BosId, tokenizer.EosId, 0);
    }

    /// <summary>
    /// A placeholder vocabulary for a model without a tokenizer (random-weight fixtures and benchmarks):
    /// <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, the 256 byte tokens, then <c>▁tokN</c> pieces up to
    /// <paramref name="vocabSize"/> (at least 259).
    /// </summary>
    public static GgufVocabulary Placeholder(int vocabSize)
    {
        const int byteStart = 3;
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, byteStart + 256);
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        (tokens[0], types[0]) = ("<unk>", (int)TokenType.Unknown);
        (tokens[1], types[1]) = ("<s>", (int)TokenType.Control);
        (tokens[2], types[2]) = ("</s>", (int)TokenType.Control);
        for (int b = 0; b < 256; b++) (tokens[byteStart + b], types[byteStart + b]) = ($"<0x{b:X2}>", (int)TokenType.Byte);
        for (int id = byteStart + 256; id < vocabSize; id++) (tokens[id], scores[id], types[id]) = ($"\u2581tok{id}", -id, (int)TokenType.Normal);
        return new GgufVocabulary(tokens, scores, types, 1, 2, 0);
    }

    private static bool IsBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' && Uri.IsHexDigit(piece[3]) && Uri.IsHexDigit(piece[4]);
}
