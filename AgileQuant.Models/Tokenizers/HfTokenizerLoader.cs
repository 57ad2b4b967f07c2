using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Loads the tokenizer of a Hugging Face checkpoint directory, choosing by the files present:
/// <c>tokenizer.model</c> (LLaMA SentencePiece BPE) → <see cref="SpmVocabularyTokenizer"/> (exact to Google's
/// sentencepiece, unlike <see cref="LlamaTokenizer"/>); else <c>tokenizer.json</c>
/// (BLOOM, GPT-NeoX) → byte-level <see cref="BpeTokenizer"/>; else <c>vocab.json</c> + <c>merges.txt</c>
/// (OPT, GPT-2) → byte-level <see cref="BpeTokenizer"/>. Whether a BOS token is prepended follows
/// <c>tokenizer_config.json</c> (<c>add_bos_token</c>, <c>bos_token</c>) or, for tokenizer.json, its
/// <c>TemplateProcessing</c> post-processor.
/// </summary>
public static class HfTokenizerLoader
{
    /// <summary>Loads the tokenizer found in <paramref name="directory"/>.</summary>
    /// <param name="directory">A Hugging Face model directory.</param>
    /// <exception cref="ModelFormatException">No tokenizer file is present, or the one present is malformed or unsupported.</exception>
    public static Tokenizer LoadFromDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string config = Path.Combine(directory, "tokenizer_config.json");
        (bool? addBos, string? bosToken) = ReadConfig(config);

        string sentencePiece = Path.Combine(directory, HfLlamaTokenizerLoader.ModelFileName);
        if (File.Exists(sentencePiece)) return SpmVocabularyTokenizer.LoadSentencePieceModel(sentencePiece, addBos ?? true);

        string tokenizerJson = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(tokenizerJson))
        {
            string? bos = addBos == false ? null : TemplateBos(tokenizerJson) ?? (addBos == true ? bosToken : null);
            return ByteLevelBpeTokenizerLoader.FromTokenizerJson(tokenizerJson, bos);
        }

        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
            return ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocab, merges, addBos == true ? bosToken : null);

        throw new ModelFormatException(directory, null,
            "expected tokenizer.model, tokenizer.json, or vocab.json with merges.txt in the directory, found none");
    }

    /// <summary>add_bos_token and the bos_token text (a string or an object with "content") of tokenizer_config.json, if present.</summary>
    private static (bool? AddBos, string? BosToken) ReadConfig(string path)
    {
        if (!File.Exists(path)) return (null, null);
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, null, $"expected a JSON object, found {root.ValueKind}");
        bool? addBos = root.TryGetProperty("add_bos_token", out JsonElement add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? add.GetBoolean() : null;
        string? bos = null;
        if (root.TryGetProperty("bos_token", out JsonElement token))
        {
            if (token.ValueKind == JsonValueKind.String) bos = token.GetString();
            else if (token.ValueKind == JsonValueKind.Object && token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
                bos = content.GetString();
        }
        if (addBos == true && bos is null)
            throw new ModelFormatException(path, null, "expected bos_token since add_bos_token is true, found none");
        return (addBos, bos);
    }

    /// <summary>The special token a TemplateProcessing post-processor puts before a single sequence, if any.</summary>
    private static string? TemplateBos(string path)
    {
        using JsonDocument doc = ByteLevelBpeTokenizerLoader.ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("post_processor", out JsonElement processor))
            return null;
        IEnumerable<JsonElement> candidates = processor.ValueKind == JsonValueKind.Object && processor.TryGetProperty("processors", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToArray()
            : [processor];
        foreach (JsonElement candidate in candidates)
        {
            if (candidate.ValueKind == JsonValueKind.Object &&
                candidate.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "TemplateProcessing" &&
                candidate.TryGetProperty("single", out JsonElement single) && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0 &&
                single[0].ValueKind == JsonValueKind.Object && single[0].TryGetProperty("SpecialToken", out JsonElement special) &&
                special.ValueKind == JsonValueKind.Object && special.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String)
                return id.GetString();
        }
        return null;
    }
}
