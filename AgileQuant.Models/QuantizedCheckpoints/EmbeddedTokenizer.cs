using System.Text.Json;
using System.Text.Json.Serialization;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.QuantizedCheckpoints;

/// <summary>One tokenizer file carried inside a quantized checkpoint: its file name and its bytes.</summary>
/// <param name="Name">A plain file name (no folder), e.g. <c>tok512.bin</c> or <c>tokenizer.model</c>.</param>
/// <param name="Contents">The file's bytes, unchanged.</param>
public sealed record EmbeddedTokenizerFile(string Name, byte[] Contents);

/// <summary>
/// The tokenizer a quantized checkpoint carries, so that the checkpoint loads on its own: the tokenizer's files byte
/// for byte (one file such as llama2.c's <c>tokenizer.bin</c>, or the tokenizer files of a Hugging Face folder) and
/// the token ids that end generation (<see cref="LoadedModel.EndTokenIds"/>).
/// </summary>
/// <param name="Files">The files, in the order written.</param>
/// <param name="IsDirectory">True: the files form a Hugging Face tokenizer folder; false: one tokenizer file.</param>
/// <param name="EndTokenIds">The end tokens of the model the checkpoint was made from.</param>
public sealed record EmbeddedTokenizer(IReadOnlyList<EmbeddedTokenizerFile> Files, bool IsDirectory, IReadOnlyList<int> EndTokenIds)
{
    /// <summary>Longest file name accepted (names are file names, never paths).</summary>
    internal const int MaxNameLength = 128;

    /// <summary>
    /// The tokenizer of <paramref name="model"/> read back from the files it was loaded from
    /// (<see cref="LoadedModel.TokenizerSource"/>), or null when it came from no file (a GGUF vocabulary, or none).
    /// </summary>
    /// <exception cref="IOException">A tokenizer file can no longer be read.</exception>
    public static EmbeddedTokenizer? From(LoadedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.TokenizerSource is not { } source) return null;
        EmbeddedTokenizerFile[] files = source.Paths.Select(p => new EmbeddedTokenizerFile(Path.GetFileName(p), File.ReadAllBytes(p))).ToArray();
        return new EmbeddedTokenizer(files, source.IsDirectory, model.EndTokenIds);
    }

    /// <summary>Builds the tokenizer: the files are written to a private temporary folder, loaded as from disk, and deleted.</summary>
    /// <exception cref="ModelFormatException">The carried files do not form a tokenizer of at most <paramref name="vocabSize"/> tokens.</exception>
    internal Tokenizer Load(string checkpointPath, int vocabSize)
    {
        string folder = Directory.CreateTempSubdirectory("agilequant-tokenizer-").FullName;
        try
        {
            foreach (EmbeddedTokenizerFile file in Files) File.WriteAllBytes(Path.Combine(folder, file.Name), file.Contents);
            try
            {
                if (!IsDirectory) return ModelLoader.LoadTokenizer(Path.Combine(folder, Files[0].Name), vocabSize);
                Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(folder);
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

    public const string FileLayout = "file";
    public const string DirectoryLayout = "directory";

    public static string TensorName(int index) => $"tokenizer_file.{index}";

    public static string Serialize(EmbeddedTokenizer tokenizer) => JsonSerializer.Serialize(new TokenizerEntry
    {
        Layout = tokenizer.IsDirectory ? DirectoryLayout : FileLayout,
        Files = tokenizer.Files.Select(f => f.Name).ToArray(),
        EndTokenIds = tokenizer.EndTokenIds.ToArray(),
    });
}
