using System.Text.Json;
using AgileQuant.Models.Tokenizers;
using TokenType = AgileQuant.Models.Tokenizers.SpmVocabularyTokenizer.TokenType;

namespace AgileQuant.Models.Gguf;

public sealed partial record GgufVocabulary
{
    /// <summary>Score of added and padding tokens, as llama.cpp's <c>convert_hf_to_gguf.py</c> writes it (they are cut out of the text before merging).</summary>
    private const float AddedTokenScore = -1000f;

    /// <summary>
    /// <c>tokenizer.ggml.add_space_prefix</c> of a SentencePiece vocabulary: whether encoding puts a <c>▁</c> before the
    /// text (llama.cpp's default, true; false for Gemma). Written only when false.
    /// </summary>
    public bool AddSpacePrefix { get; init; } = true;

    /// <summary>
    /// The vocabulary of a Hugging Face <c>tokenizer.json</c> (and the <c>tokenizer_config.json</c> beside it) as llama.cpp's
    /// <c>convert_hf_to_gguf.py</c> writes it into a GGUF:
    /// <list type="bullet">
    /// <item>a BPE with <c>model.byte_fallback</c> (Gemma, Llama 2, Mistral) as a SentencePiece vocabulary
    /// (<c>tokenizer.ggml.model = llama</c>): pieces as spelled (<c>▁</c> for a space), <c>&lt;0xNN&gt;</c> pieces BYTE, each
    /// piece's score minus the rank of the first merge that makes it (llama.cpp merges the adjacent pair whose piece scores
    /// highest: the merge order, as the tokenizer.json's merges list the SentencePiece model's pieces by score), and
    /// <c>add_space_prefix</c> as the normalizer / Metaspace step says (false for Gemma);</item>
    /// <item>a byte-level BPE (Llama 3, Qwen) as <c>tokenizer.ggml.model = gpt2</c> with its merges and the
    /// <see cref="PreTokenizerCatalog"/> name of its Split regexes (<c>tokenizer.ggml.pre</c>).</item>
    /// </list>
    /// Added tokens: special ones, and those llama.cpp's converter takes for special by their text (<c>&lt;|…|&gt;</c>,
    /// <c>&lt;unused…&gt;</c>, <c>&lt;pad&gt;</c>, <c>&lt;mask&gt;</c>), CONTROL; the others USER_DEFINED (a SentencePiece
    /// one with <c>▁</c> written as a space, matched in the raw text). BOS, EOS, unknown and padding ids are those of
    /// tokenizer_config.json's <c>bos_token</c> (else the post-processor's), <c>eos_token</c>, <c>model.unk_token</c> and
    /// <c>pad_token</c>; <c>add_bos_token</c> is tokenizer_config.json's, else whether the post-processor adds a BOS.
    /// </summary>
    /// <param name="path">The tokenizer.json file.</param>
    /// <param name="vocabSize">The model's vocabulary size (its embedding rows); ids past the tokenizer's become unused
    /// <c>[PADn]</c> tokens. Null: the tokenizer's own size.</param>
    /// <exception cref="ModelFormatException">The file is missing or malformed, is not a BPE, has a pre-tokenizer llama.cpp has no
    /// name for, or has more tokens than <paramref name="vocabSize"/>.</exception>
    public static GgufVocabulary FromTokenizerJson(string path, int? vocabSize = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        JsonElement root = doc.RootElement;
        JsonElement model = TokenizerJson.Model(path, root);
        if (TokenizerJson.TypeOf(model) is string type && type != "BPE")
            throw new ModelFormatException(path, null, $"expected model.type 'BPE' to write a GGUF vocabulary, found '{type}' (not supported)");
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement))
            throw new ModelFormatException(path, null, "expected model.vocab, found none");
        bool sentencePiece = model.TryGetProperty("byte_fallback", out JsonElement fallback) && fallback.ValueKind == JsonValueKind.True;
        HfTokenizerLoader.TokenizerConfig config = HfTokenizerLoader.ReadConfig(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json"));

        Dictionary<string, int> vocabulary = ByteLevelBpeTokenizerLoader.ReadVocabularyObject(path, vocabElement, "model.vocab");
        List<AddedToken> added = TokenizerJson.AddedTokens(path, root);
        int count = Math.Max(vocabulary.Count == 0 ? -1 : vocabulary.Values.Max(), added.Count == 0 ? -1 : added.Max(t => t.Id)) + 1;
        if (vocabSize is int size && size < count)
            throw new ModelFormatException(path, null, $"expected at most {size} tokens (the model's vocabulary size), found ids up to {count - 1}");
        count = vocabSize ?? count;
        var tokens = new string[count];
        var types = new int[count];
        var scores = new float[count];
        foreach ((string piece, int id) in vocabulary)
            (tokens[id], types[id]) = (piece, (int)(sentencePiece && IsBytePiece(piece) ? TokenType.Byte : TokenType.Normal));
        if (sentencePiece)
        {
            // Each piece scores minus the rank of the first merge that makes it; pieces no merge makes (characters, bytes) 0.
            var scored = new bool[count];
            List<string> merges = TokenizerJson.Merges(path, model);
            for (int rank = 0; rank < merges.Count; rank++)
                if (vocabulary.TryGetValue(merges[rank].Remove(merges[rank].IndexOf(' ', StringComparison.Ordinal), 1), out int id) && !scored[id])
                    (scores[id], scored[id]) = (-rank, true);
        }
        foreach (AddedToken token in added)
        {
            bool control = token.Special || LooksSpecial(token.Content);
            tokens[token.Id] = control || !sentencePiece ? token.Content : token.Content.Replace('\u2581', ' ');
            types[token.Id] = (int)(control ? TokenType.Control : TokenType.UserDefined);
            scores[token.Id] = AddedTokenScore;
        }
        for (int id = 0; id < count; id++)
            if (tokens[id] is null) (tokens[id], types[id], scores[id]) = ($"[PAD{id}]", (int)TokenType.Unused, AddedTokenScore);

        var byText = new Dictionary<string, int>(count, StringComparer.Ordinal);
        foreach (AddedToken token in added) byText.TryAdd(token.Content, token.Id);
        foreach ((string piece, int id) in vocabulary) byText.TryAdd(piece, id);
        int Id(string? text) => text is not null && byText.TryGetValue(text, out int id) ? id : -1;
        string? templateBos = TokenizerJson.TemplateBos(root);
        int bos = Id(config.BosToken ?? templateBos), eos = Id(config.EosToken), padding = Id(config.PadToken);
        bool addBos = config.AddBos ?? templateBos is not null;
        if (addBos && bos < 0) throw new ModelFormatException(path, null, "expected a BOS token (tokenizer_config.json bos_token or a TemplateProcessing post-processor) since BOS is added, found none");

        if (sentencePiece)
        {
            (bool prefix, _) = SpmVocabularyTokenizer.ReadSpaceHandling(path, root);
            string? unknown = model.TryGetProperty("unk_token", out JsonElement unk) && unk.ValueKind == JsonValueKind.String ? unk.GetString() : null;
            return new GgufVocabulary(tokens, scores, types, bos, eos, Id(unknown))
            {
                AddBos = addBos,
                AddSpacePrefix = prefix,
                PaddingId = padding >= 0 ? padding : null,
            };
        }
        PreTokenizerDescription pre = ByteLevelBpeTokenizerLoader.ReadPreTokenizer(path, root);
        if (PreTokenizerCatalog.FindByName(pre.Name) is null)
            throw new ModelFormatException(path, null, $"expected Split regexes of a pre-tokenizer llama.cpp names ({string.Join(", ", PreTokenizerCatalog.Names)}) to write tokenizer.ggml.pre, found others");
        return BytePairEncoding(tokens, types, TokenizerJson.Merges(path, model), pre.Name, bos, eos, addBos) with { PaddingId = padding >= 0 ? padding : null };
    }

    /// <summary>Texts llama.cpp's converter writes as CONTROL whatever the tokenizer says (<c>does_token_look_special</c>).</summary>
    private static bool LooksSpecial(string text) =>
        text is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal))
        || (text.StartsWith("<\uFF5C", StringComparison.Ordinal) && text.EndsWith("\uFF5C>", StringComparison.Ordinal))
        || (text.StartsWith("<unused", StringComparison.Ordinal) && text.EndsWith('>'));
}
