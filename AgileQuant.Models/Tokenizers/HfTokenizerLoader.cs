using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Loads the tokenizer of a Hugging Face checkpoint directory, choosing by the files present:
/// <c>tokenizer.model</c> (LLaMA SentencePiece BPE) → <see cref="SpmVocabularyTokenizer"/> (exact to Google's
/// sentencepiece, unlike <see cref="LlamaTokenizer"/>); else <c>tokenizer.json</c> (see <see cref="LoadTokenizerJson"/>);
/// else <c>vocab.json</c> + <c>merges.txt</c> (OPT, GPT-2) → byte-level <see cref="BpeTokenizer"/>. Whether a BOS token is
/// prepended follows the caller, else <c>tokenizer_config.json</c> (<c>add_bos_token</c>, <c>bos_token</c>) or, for
/// tokenizer.json, its <c>TemplateProcessing</c> post-processor.
/// </summary>
public static class HfTokenizerLoader
{
    /// <summary>Loads the tokenizer found in <paramref name="directory"/>.</summary>
    /// <param name="directory">A Hugging Face model directory.</param>
    /// <param name="addBos">Whether encoding prepends BOS; null follows the directory's files.</param>
    /// <param name="parseSpecialTokens">Whether special tokens written in the text (<c>&lt;|im_end|&gt;</c>) encode as their ids;
    /// when false (the default) they encode as plain text.</param>
    /// <exception cref="ModelFormatException">No tokenizer file is present, or the one present is malformed or unsupported.</exception>
    public static Tokenizer LoadFromDirectory(string directory, bool? addBos = null, bool parseSpecialTokens = false) =>
        LoadDirectory(directory, addBos, parseSpecialTokens).Tokenizer;

    /// <summary>
    /// Loads a Hugging Face <c>tokenizer.json</c>: a byte-level BPE (<see cref="ByteLevelBpeTokenizerLoader.FromTokenizerJson(string, string?, bool)"/>:
    /// GPT-2, Llama 3, Qwen2/3, DeepSeek, BLOOM) or, when <c>model.byte_fallback</c> is true, a SentencePiece-style BPE
    /// (<see cref="SpmVocabularyTokenizer"/>: Gemma, Llama 2, Mistral, Phi-3). A <c>tokenizer_config.json</c> beside it
    /// supplies the BOS and EOS texts.
    /// </summary>
    /// <param name="path">The tokenizer.json file.</param>
    /// <param name="addBos">Whether encoding prepends BOS; null follows the post-processor and tokenizer_config.json.</param>
    /// <param name="parseSpecialTokens">Whether special added tokens written in the text encode as their ids.</param>
    /// <exception cref="ModelFormatException">The file is missing, malformed or of an unsupported kind.</exception>
    public static Tokenizer LoadTokenizerJson(string path, bool? addBos = null, bool parseSpecialTokens = false) =>
        LoadTokenizerJsonFile(path, addBos, parseSpecialTokens).Tokenizer;

    /// <summary>A tokenizer.json and the special tokens it and the tokenizer_config.json / generation_config.json beside it declare.</summary>
    internal static LoadedTokenizer LoadTokenizerJsonFile(string path, bool? addBos, bool parseSpecialTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        LoadedTokenizer loaded = LoadJson(path, ReadConfig(Path.Combine(directory, "tokenizer_config.json")), addBos, parseSpecialTokens);
        return loaded with { Special = loaded.Special with { OtherEndOfGeneration = ReadGenerationEos(Path.Combine(directory, "generation_config.json")) } };
    }

    /// <summary>The tokenizer of a directory and the special tokens its files declare.</summary>
    internal static LoadedTokenizer LoadDirectory(string directory, bool? addBos, bool parseSpecialTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        TokenizerConfig config = ReadConfig(Path.Combine(directory, "tokenizer_config.json"));
        IReadOnlyList<int> generationEos = ReadGenerationEos(Path.Combine(directory, "generation_config.json"));

        string sentencePiece = Path.Combine(directory, HfLlamaTokenizerLoader.ModelFileName);
        if (File.Exists(sentencePiece))
        {
            SpmVocabularyTokenizer spm = SpmVocabularyTokenizer.LoadSentencePieceModel(sentencePiece, addBos ?? config.AddBos ?? true, parseSpecialTokens);
            return new LoadedTokenizer(spm, SentencePieceSpecials(spm, config) with { OtherEndOfGeneration = generationEos }, "sentencepiece");
        }

        string tokenizerJson = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(tokenizerJson)) return LoadTokenizerJsonFile(tokenizerJson, addBos, parseSpecialTokens);

        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            bool bos = addBos ?? config.AddBos == true;
            if (bos && config.BosToken is null)
                throw new ModelFormatException(directory, null, "expected a bos_token in tokenizer_config.json to add BOS, found none");
            BpeTokenizer bpe = ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocab, merges, bos ? config.BosToken : null);
            int? Id(string? text) => text is not null && bpe.Vocabulary.TryGetValue(text, out int id) ? id : null;
            var special = new SpecialTokens { Bos = Id(config.BosToken), Eos = Id(config.EosToken), Padding = Id(config.PadToken), OtherEndOfGeneration = generationEos };
            return new LoadedTokenizer(bpe, special, "vocab.json");
        }

        throw new ModelFormatException(directory, null,
            "expected tokenizer.model, tokenizer.json, or vocab.json with merges.txt in the directory, found none");
    }

    private static LoadedTokenizer LoadJson(string path, TokenizerConfig config, bool? addBos, bool parseSpecialTokens)
    {
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        JsonElement root = doc.RootElement;
        JsonElement model = TokenizerJson.Model(path, root);
        string? templateBos = TokenizerJson.TemplateBos(root);
        string? bosText = templateBos ?? config.BosToken;
        // The post-processor decides for tokenizer.json; tokenizer_config.json's add_bos_token only when it has none.
        bool bos = addBos ?? (templateBos is not null ? config.AddBos != false : config.AddBos == true);
        if (bos && bosText is null)
            throw new ModelFormatException(path, null, "expected a BOS token (post_processor TemplateProcessing or tokenizer_config.json bos_token) to add BOS, found none");
        bool byteFallback = model.TryGetProperty("byte_fallback", out JsonElement fallback) && fallback.ValueKind == JsonValueKind.True;
        Tokenizer tokenizer = byteFallback
            ? SpmVocabularyTokenizer.FromTokenizerJson(path, root, bosText, config.EosToken, bos, parseSpecialTokens)
            : ByteLevelBpeTokenizerLoader.FromTokenizerJson(path, root, bos ? bosText : null, parseSpecialTokens);

        var byText = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken token in TokenizerJson.AddedTokens(path, root)) byText.TryAdd(token.Content, token.Id);
        Dictionary<string, int>? vocabulary = model.TryGetProperty("vocab", out JsonElement vocab) && vocab.ValueKind == JsonValueKind.Object
            ? ByteLevelBpeTokenizerLoader.ReadVocabularyObject(path, vocab, "model.vocab") : null;
        int? Id(string? text) => text is null ? null : byText.TryGetValue(text, out int a) ? a : vocabulary is not null && vocabulary.TryGetValue(text, out int v) ? v : null;
        string? unknown = model.TryGetProperty("unk_token", out JsonElement unk) && unk.ValueKind == JsonValueKind.String ? unk.GetString() : null;
        var special = new SpecialTokens { Bos = Id(bosText), Eos = Id(config.EosToken), Unknown = Id(unknown), Padding = Id(config.PadToken), ByText = byText };
        return new LoadedTokenizer(tokenizer, special, "tokenizer.json");
    }

    private static SpecialTokens SentencePieceSpecials(SpmVocabularyTokenizer spm, TokenizerConfig config)
    {
        var byText = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in new[] { config.BosToken, config.EosToken, config.PadToken }.OfType<string>())
            for (int id = 0; id < spm.VocabSize; id++)
                if (spm.GetPiece(id) == text) { byText.TryAdd(text, id); break; }
        return new SpecialTokens
        {
            Bos = spm.BosId >= 0 ? spm.BosId : null,
            Eos = config.EosToken is not null && byText.TryGetValue(config.EosToken, out int eos) ? eos : spm.EosId >= 0 ? spm.EosId : null,
            Padding = config.PadToken is not null && byText.TryGetValue(config.PadToken, out int pad) ? pad : null,
            ByText = byText,
        };
    }

    /// <summary>What tokenizer_config.json says: add_bos_token and the BOS, EOS and padding texts (strings or objects with "content").</summary>
    internal readonly record struct TokenizerConfig(bool? AddBos, string? BosToken, string? EosToken, string? PadToken);

    internal static TokenizerConfig ReadConfig(string path)
    {
        if (!File.Exists(path)) return default;
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, null, $"expected a JSON object, found {root.ValueKind}");
        bool? addBos = root.TryGetProperty("add_bos_token", out JsonElement add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? add.GetBoolean() : null;
        string? bos = TokenText(root, "bos_token");
        if (addBos == true && bos is null)
            throw new ModelFormatException(path, null, "expected bos_token since add_bos_token is true, found none");
        return new TokenizerConfig(addBos, bos, TokenText(root, "eos_token"), TokenText(root, "pad_token"));
    }

    private static string? TokenText(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement token)) return null;
        if (token.ValueKind == JsonValueKind.String) return token.GetString();
        return token.ValueKind == JsonValueKind.Object && token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String
            ? content.GetString() : null;
    }

    /// <summary>generation_config.json's <c>eos_token_id</c> (one id or a list), when the file is there.</summary>
    private static IReadOnlyList<int> ReadGenerationEos(string path)
    {
        if (!File.Exists(path)) return [];
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("eos_token_id", out JsonElement eos)) return [];
        IEnumerable<JsonElement> ids = eos.ValueKind == JsonValueKind.Array ? eos.EnumerateArray() : [eos];
        var result = new List<int>();
        foreach (JsonElement id in ids)
            if (id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out int value) && value >= 0) result.Add(value);
            else throw new ModelFormatException(path, null, $"eos_token_id: expected a token id or a list of them, found {id}");
        return result;
    }
}
