using AgileQuant.Models.Gguf;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>A tokenizer loaded from a model's files, with the special tokens those files declare.</summary>
/// <param name="Tokenizer">The tokenizer.</param>
/// <param name="Special">The special tokens the files declare (BOS, EOS, end-of-turn tokens, added tokens by text).</param>
/// <param name="Format">What it was read from: <c>gguf</c>, <c>tokenizer.json</c>, <c>sentencepiece</c>, <c>vocab.json</c> or <c>llama2.c</c>.</param>
public sealed record LoadedTokenizer(Tokenizer Tokenizer, SpecialTokens Special, string Format);

/// <summary>
/// Loads a tokenizer from any file or directory AgileQuant reads one from, by what the path is: a GGUF file (a
/// vocabulary-only file is enough), a Hugging Face model directory, a <c>tokenizer.json</c>, a SentencePiece
/// <c>tokenizer.model</c>, or a llama2.c <c>tokenizer.bin</c>.
/// </summary>
public static class TokenizerFile
{
    /// <summary>Loads the tokenizer at <paramref name="path"/>.</summary>
    /// <param name="path">A .gguf file, a Hugging Face directory, a tokenizer.json, a SentencePiece .model or a llama2.c .bin.</param>
    /// <param name="addBos">Whether encoding prepends BOS; null follows the files (GGUF <c>add_bos_token</c>, tokenizer_config.json, …).</param>
    /// <param name="parseSpecialTokens">Whether special (control) tokens written in the text encode as their ids; when false
    /// (the default) they encode as plain text, so text from users cannot forge them.</param>
    /// <exception cref="ModelFormatException">The path is missing, of an unknown kind, or its tokenizer is malformed or unsupported.</exception>
    public static LoadedTokenizer Load(string path, bool? addBos = null, bool parseSpecialTokens = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path)) return HfTokenizerLoader.LoadDirectory(path, addBos, parseSpecialTokens);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a tokenizer file or a model directory, found nothing at this path");
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".gguf":
                GgufFile gguf = GgufFile.Read(path);
                return new LoadedTokenizer(GgufTokenizerLoader.Create(gguf, addBos, parseSpecialTokens), GgufTokenizerLoader.ReadSpecialTokens(gguf), "gguf");
            case ".json":
                return HfTokenizerLoader.LoadTokenizerJsonFile(path, addBos, parseSpecialTokens);
            case ".model":
                SpmVocabularyTokenizer spm = SpmVocabularyTokenizer.LoadSentencePieceModel(path, addBos ?? true, parseSpecialTokens);
                return new LoadedTokenizer(spm, new SpecialTokens { Bos = spm.BosId, Eos = spm.EosId }, "sentencepiece");
            case ".bin":
                Llama2cTokenizer llama2c = Llama2cTokenizer.Load(path, addBos ?? true);
                return new LoadedTokenizer(llama2c, new SpecialTokens { Bos = llama2c.BosId, Eos = llama2c.EosId }, "llama2.c");
            default:
                throw new ModelFormatException(path, null,
                    "expected a .gguf file, a Hugging Face directory, a tokenizer.json, a SentencePiece .model or a llama2.c tokenizer .bin, found another kind of file");
        }
    }
}
