using System.Text.Json;
using System.Text.Json.Serialization;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.QuantizedCheckpoints;

/// <summary>One tokenizer file carried inside a quantized checkpoint: its file name and its bytes.</summary>
/// <param name="Name">A plain file name (no folder), e.g. <c>tok512.bin</c> or <c>tokenizer.model</c>.</param>
/// <param name="Contents">The file's bytes, unchanged.</param>
public sealed record EmbeddedTokenizerFile(string Name, byte[] Contents);

/// <summary>
/// The tokenizer a quantized checkpoint carries, so that the checkpoint loads on its own: the tokenizer's files byte
/// for byte (one file such as llama2.c's <c>tokenizer.bin</c>, the tokenizer files of a Hugging Face folder, or a GGUF
/// model's vocabulary as a vocabulary-only GGUF file), the token ids that end generation (<see cref="LoadedModel.EndTokenIds"/>)
/// and the model's chat template (<see cref="ChatTemplate"/>).
/// </summary>
/// <param name="Files">The files, in the order written.</param>
/// <param name="IsDirectory">True: the files form a Hugging Face tokenizer folder; false: one tokenizer file.</param>
/// <param name="EndTokenIds">The end tokens of the model the checkpoint was made from.</param>
public sealed record EmbeddedTokenizer(IReadOnlyList<EmbeddedTokenizerFile> Files, bool IsDirectory, IReadOnlyList<int> EndTokenIds)
{
    /// <summary>Longest file name accepted (names are file names, never paths).</summary>
    internal const int MaxNameLength = 128;

    /// <summary>Name of the vocabulary-only GGUF file that carries a GGUF model's vocabulary.</summary>
    internal const string GgufVocabularyName = "vocabulary.gguf";

    /// <summary>
    /// The chat template of the model the checkpoint was made from (<see cref="LoadedModel.ChatTemplateText"/>), so that chat on the
    /// checkpoint formats conversations as on its source; null: the source carried none.
    /// </summary>
    public string? ChatTemplate { get; init; }

    /// <summary>
    /// The tokenizer of <paramref name="model"/> read back from the files it was loaded from
    /// (<see cref="LoadedModel.TokenizerSource"/>) or, for a GGUF model's own vocabulary, from the model file's
    /// <c>tokenizer.*</c> keys; with the model's end tokens and chat template. Null when the model has no tokenizer.
    /// </summary>
    /// <exception cref="IOException">A tokenizer file can no longer be read.</exception>
    public static EmbeddedTokenizer? From(LoadedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.TokenizerSource is not { } source)
            return model.Format == "gguf" && model.Tokenizer is not null
                ? new EmbeddedTokenizer([GgufVocabularyFile(model.SourcePath)], false, model.EndTokenIds) { ChatTemplate = model.ChatTemplateText }
                : null;
        EmbeddedTokenizerFile[] files = source.Paths.Select(p => new EmbeddedTokenizerFile(Path.GetFileName(p), File.ReadAllBytes(p))).ToArray();
        return new EmbeddedTokenizer(files, source.IsDirectory, model.EndTokenIds) { ChatTemplate = model.ChatTemplateText };
    }

    /// <summary>
    /// The vocabulary of the GGUF model at <paramref name="ggufPath"/> as a vocabulary-only GGUF file (no tensors): every
    /// <c>tokenizer.*</c> key but the chat template (carried as <see cref="ChatTemplate"/>), and <c>general.architecture</c>
    /// and <c>general.name</c>, from which llama.cpp's tokenizer takes Phi-3's whitespace handling; values unchanged.
    /// </summary>
    private static EmbeddedTokenizerFile GgufVocabularyFile(string ggufPath)
    {
        GgufFile gguf = GgufFile.Read(ggufPath);
        var writer = new GgufWriter();
        foreach (string key in gguf.Keys)
            if (key is "general.architecture" or "general.name" || (key.StartsWith("tokenizer.", StringComparison.Ordinal) && key != ModelChatTemplate.GgufKey))
                writer.AddValue(key, gguf.Metadata[key]);
        using var bytes = new MemoryStream();
        writer.WriteTo(bytes);
        return new EmbeddedTokenizerFile(GgufVocabularyName, bytes.ToArray());
    }

    /// <summary>Whether the carried tokenizer has a variant that parses special tokens written in the text (all but llama2.c's <c>.bin</c>).</summary>
    internal bool CanParseSpecialTokens => IsDirectory || !Files[0].Name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Builds the tokenizer (with <paramref name="parseSpecialTokens"/>, the variant that encodes special tokens written in the
    /// text as their ids, for chat prompts): the files are written to a private temporary folder, loaded as from disk, and deleted.
    /// </summary>
    /// <exception cref="ModelFormatException">The carried files do not form a tokenizer of at most <paramref name="vocabSize"/> tokens.</exception>
    internal Tokenizer Load(string checkpointPath, int vocabSize, bool parseSpecialTokens = false)
    {
        string folder = Directory.CreateTempSubdirectory("agilequant-tokenizer-").FullName;
        try
        {
            foreach (EmbeddedTokenizerFile file in Files) File.WriteAllBytes(Path.Combine(folder, file.Name), file.Contents);
            try
            {
                string file = Path.Combine(folder, Files[0].Name);
                if (!IsDirectory && parseSpecialTokens)
                {
                    Tokenizer parsing = TokenizerFile.Load(file, parseSpecialTokens: true).Tokenizer;
                    ModelLoader.CheckFits(file, parsing, vocabSize);
                    return parsing;
                }
                if (!IsDirectory) return ModelLoader.LoadTokenizer(file, vocabSize);
                Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(folder, parseSpecialTokens: parseSpecialTokens);
                ModelLoader.CheckFits(folder, tokenizer, vocabSize);
                return tokenizer;
            }
            catch (ModelFormatException e)
            {
                throw new ModelFormatException(checkpointPath, null, $"expected the tokenizer it carries ({string.Join(", ", Files.Select(f => f.Name))}) to load, found an error: {e.Message}", e);
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Throws unless every name is a plain, distinct file name and every file holds bytes.</summary>
    internal void Validate(string path)
    {
        if (Files.Count == 0 || (!IsDirectory && Files.Count != 1))
            throw new ModelFormatException(path, null, $"expected one tokenizer file, or a tokenizer folder's files, found {Files.Count} files");
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (EmbeddedTokenizerFile file in Files)
        {
            bool plain = file.Name.Length is > 0 and <= MaxNameLength && file.Name == Path.GetFileName(file.Name) && file.Name is not ("." or "..")
                && file.Name.IndexOfAny(Path.GetInvalidFileNameChars()) < 0 && file.Name.IndexOfAny(['/', '\\', ':']) < 0;
            if (!plain) throw new ModelFormatException(path, null, $"expected tokenizer file names without folders (at most {MaxNameLength} characters), found \"{file.Name}\"");
            if (!seen.Add(file.Name)) throw new ModelFormatException(path, null, $"expected distinct tokenizer file names, found \"{file.Name}\" twice");
            if (file.Contents.Length == 0) throw new ModelFormatException(path, null, $"expected tokenizer file \"{file.Name}\" to hold bytes, found it empty");
        }
    }
}

/// <summary>The <c>"agilequant.tokenizer"</c> entry: which tokenizer files the checkpoint carries (tensors <c>tokenizer_file.{i}</c>) and its end tokens.</summary>
internal sealed record TokenizerEntry
{
    /// <summary><c>file</c> (one tokenizer file) or <c>directory</c> (a Hugging Face tokenizer folder).</summary>
    [JsonPropertyName("layout")] public required string Layout { get; init; }

    /// <summary>File names; file i is the U8 tensor <c>tokenizer_file.{i}</c>.</summary>
    [JsonPropertyName("files")] public required string[] Files { get; init; }

    /// <summary><see cref="EmbeddedTokenizer.EndTokenIds"/>.</summary>
    [JsonPropertyName("end_token_ids")] public required int[] EndTokenIds { get; init; }

    /// <summary><see cref="EmbeddedTokenizer.ChatTemplate"/>; absent when null.</summary>
    [JsonPropertyName("chat_template")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ChatTemplate { get; init; }

    public const string FileLayout = "file";
    public const string DirectoryLayout = "directory";

    public static string TensorName(int index) => $"tokenizer_file.{index}";

    public static string Serialize(EmbeddedTokenizer tokenizer) => JsonSerializer.Serialize(new TokenizerEntry
    {
        Layout = tokenizer.IsDirectory ? DirectoryLayout : FileLayout,
        Files = tokenizer.Files.Select(f => f.Name).ToArray(),
        EndTokenIds = tokenizer.EndTokenIds.ToArray(),
        ChatTemplate = tokenizer.ChatTemplate,
    });
}
