using AgileQuant.Models.Gguf;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Builds the tokenizer a GGUF file describes in its <c>tokenizer.ggml.*</c> metadata:
/// <c>model = "llama"</c> → <see cref="SpmVocabularyTokenizer"/> (tokens, scores, token_type);
/// <c>model = "gpt2"</c> → byte-level <see cref="BpeTokenizer"/> (tokens, merges) via <see cref="ByteLevelBpeTokenizerLoader"/>,
/// with the GPT-2 pre-tokenizer regex (<c>tokenizer.ggml.pre</c> must be absent or <c>gpt-2</c>).
/// </summary>
public static class GgufTokenizerLoader
{
    /// <summary>Reads the GGUF file at <paramref name="path"/> and builds its tokenizer.</summary>
    /// <param name="path">A GGUF file (a vocabulary-only file is enough).</param>
    /// <param name="addBos">Whether encoding prepends BOS; null uses <c>tokenizer.ggml.add_bos_token</c> (default: true for llama, false for gpt2).</param>
    /// <exception cref="ModelFormatException">The file or its tokenizer metadata is invalid or of an unsupported model.</exception>
    public static Tokenizer Load(string path, bool? addBos = null) => Create(GgufFile.Read(path), addBos);

    /// <summary>Builds the tokenizer described by <paramref name="gguf"/>'s metadata.</summary>
    /// <param name="gguf">A GGUF header.</param>
    /// <param name="addBos">Whether encoding prepends BOS; null uses <c>tokenizer.ggml.add_bos_token</c>.</param>
    /// <exception cref="ModelFormatException">The tokenizer metadata is missing, inconsistent or of an unsupported model.</exception>
    public static Tokenizer Create(GgufFile gguf, bool? addBos = null)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string model = gguf.GetString("tokenizer.ggml.model");
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<int>? types = gguf.TryGetValue("tokenizer.ggml.token_type", out _) ? gguf.GetArray<int>("tokenizer.ggml.token_type") : null;
        switch (model)
        {
            case "llama":
                return SpmVocabularyTokenizer.Create(gguf.FilePath, tokens, gguf.GetArray<float>("tokenizer.ggml.scores"), types,
                    TokenId(gguf, "tokenizer.ggml.bos_token_id", 1), TokenId(gguf, "tokenizer.ggml.eos_token_id", 2),
                    TokenId(gguf, "tokenizer.ggml.unknown_token_id", 0),
                    addBos ?? gguf.GetBoolean("tokenizer.ggml.add_bos_token", true),
                    gguf.GetBoolean("tokenizer.ggml.add_space_prefix", true));
            case "gpt2":
                // llama.cpp picks the pre-tokenizer regex by tokenizer.ggml.pre; only GPT-2's is implemented here.
                if (gguf.TryGetValue("tokenizer.ggml.pre", out _) && gguf.GetString("tokenizer.ggml.pre") is not "gpt-2" and string pre)
                    throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.pre 'gpt-2' (or none), found '{pre}' (not supported)");
                if (types is not null && types.Count != tokens.Count)
                    throw new ModelFormatException(gguf.FilePath, null, $"expected {tokens.Count} token types (one per token), found {types.Count}");
                var vocabulary = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
                var special = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int id = 0; id < tokens.Count; id++)
                {
                    vocabulary.TryAdd(tokens[id], id); // first id wins on duplicates
                    if (types is not null && types[id] is (int)SpmVocabularyTokenizer.TokenType.Control or (int)SpmVocabularyTokenizer.TokenType.UserDefined)
                        special.TryAdd(tokens[id], id);
                }
                string? bos = null;
                if (addBos ?? gguf.GetBoolean("tokenizer.ggml.add_bos_token", false))
                {
                    int bosId = TokenId(gguf, "tokenizer.ggml.bos_token_id", -1);
                    if (bosId < 0 || bosId >= tokens.Count)
                        throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.bos_token_id in 0..{tokens.Count - 1} to add BOS, found {bosId}");
                    bos = tokens[bosId];
                }
                return ByteLevelBpeTokenizerLoader.Create(gguf.FilePath, vocabulary, gguf.GetArray<string>("tokenizer.ggml.merges"),
                    special.Count > 0 ? special : null, bos);
            default:
                throw new ModelFormatException(gguf.FilePath, null, $"expected tokenizer.ggml.model 'llama' or 'gpt2', found '{model}'");
        }
    }

    private static int TokenId(GgufFile gguf, string key, int fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        long id = gguf.GetInteger(key);
        return id is >= 0 and <= int.MaxValue
            ? (int)id
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a token id, found {id}");
    }
}
