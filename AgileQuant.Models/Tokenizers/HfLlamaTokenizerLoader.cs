using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Creates the SentencePiece tokenizer of a Hugging Face LLaMA checkpoint directory from its
/// <c>tokenizer.model</c>, through <see cref="LlamaTokenizer.Create(Stream, bool, bool, IReadOnlyDictionary{string, int}?)"/>.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1's LlamaTokenizer differs from Google's sentencepiece on rare merges (2 of
/// 335,687 WikiText-2 tokens); <see cref="SpmVocabularyTokenizer.LoadSentencePieceModel"/> reads the same file exactly.
/// </remarks>
public static class HfLlamaTokenizerLoader
{
    /// <summary>The SentencePiece model file name inside a Hugging Face LLaMA directory.</summary>
    public const string ModelFileName = "tokenizer.model";

    /// <summary>Loads <c>tokenizer.model</c> from <paramref name="directory"/>.</summary>
    /// <param name="directory">A Hugging Face model directory.</param>
    /// <param name="addBos">Whether encoding prepends BOS.</param>
    /// <param name="addEos">Whether encoding appends EOS.</param>
    /// <exception cref="ModelFormatException">The file is missing or is not a SentencePiece BPE model.</exception>
    public static LlamaTokenizer LoadFromDirectory(string directory, bool addBos = true, bool addEos = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        return LoadModelFile(Path.Combine(directory, ModelFileName), addBos, addEos);
    }

    /// <summary>Loads a SentencePiece <c>tokenizer.model</c> file.</summary>
    /// <param name="modelPath">The SentencePiece model file.</param>
    /// <param name="addBos">Whether encoding prepends BOS.</param>
    /// <param name="addEos">Whether encoding appends EOS.</param>
    /// <exception cref="ModelFormatException">The file is missing or is not a SentencePiece BPE model.</exception>
    public static LlamaTokenizer LoadModelFile(string modelPath, bool addBos = true, bool addEos = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        if (!File.Exists(modelPath))
            throw new ModelFormatException(modelPath, null, "expected a SentencePiece tokenizer.model, found no file");
        byte[] model = GuardedFile.ReadAllBytes(modelPath, SentencePieceModelReader.MaxFileBytes);
        try
        {
            return LlamaTokenizer.Create(new MemoryStream(model), addBos, addEos);
        }
        catch (Exception e) when (e is not ModelFormatException and not OutOfMemoryException)
        {
            // The protobuf parser and the tokenizer constructor report bad models with assorted exception types.
            throw new ModelFormatException(modelPath, null, "expected a SentencePiece BPE model, could not load it: " + e.Message, e);
        }
    }
}
