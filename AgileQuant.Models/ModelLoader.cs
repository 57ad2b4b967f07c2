using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models;

/// <summary>Options for <see cref="ModelLoader.Load"/>.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Tokenizer file to use instead of the one found beside the model.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>For a Hugging Face directory: which weights file to read (e.g. <c>model.f16.safetensors</c>).</summary>
    public string? WeightsFile { get; init; }

    /// <summary>Instruction set and thread count of the kernels chosen at load (ignored when <see cref="Kernel"/> is set).</summary>
    public KernelOptions KernelOptions { get; init; } = new();

    /// <summary>A kernel to run the model with instead of choosing one from <see cref="KernelOptions"/>.</summary>
    public IMatMulKernel? Kernel { get; init; }

    /// <summary>
    /// Most bytes the FP32 weights may take, checked against the size the config or header implies before any tensor
    /// is read (null: <see cref="WeightMemoryBudget.DefaultBudget"/>, the memory available to the process).
    /// </summary>
    public long? MaxWeightBytes { get; init; }

    /// <summary>Check every weight for NaN and infinity after loading (<see cref="WeightsHealthCheck"/>); on by default.</summary>
    public bool CheckFiniteWeights { get; init; } = true;
}

/// <summary>A model loaded from disk with its tokenizer (when one was found).</summary>
/// <param name="Model">The runnable model.</param>
/// <param name="Tokenizer">Its tokenizer, or null when none was found or given.</param>
/// <param name="SourcePath">Where the weights came from.</param>
/// <param name="Format">The on-disk format (<c>llama2c</c>, <c>huggingface</c>, <c>gguf</c> or <c>agilequant</c>, a quantized checkpoint).</param>
public sealed record LoadedModel(TransformerModel Model, Tokenizer? Tokenizer, string SourcePath, string Format);

/// <summary>Loads llama2.c checkpoints and Hugging Face model directories (LLaMA, OPT, BLOOM).</summary>
public static class ModelLoader
{
    /// <summary>
    /// Loads <paramref name="path"/>: a llama2.c <c>.bin</c> file (tokenizer: <c>tokenizer.bin</c> or a single
    /// <c>tok*.bin</c> beside it) or a Hugging Face directory (<c>config.json</c> + safetensors; tokenizer:
    /// <c>tokenizer.model</c>, <c>tokenizer.json</c> or <c>vocab.json</c> + <c>merges.txt</c>), or an AgileQuant quantized
    /// checkpoint: a <c>.safetensors</c> file whose metadata has <c>agilequant.format</c> (tokenizer: as for llama2.c,
    /// else a Hugging Face tokenizer file beside it), or a LLaMA-family <c>.gguf</c> file (tokenizer: its own metadata).
    /// </summary>
    /// <exception cref="ModelFormatException">A file is missing or malformed, or tokenizer and model disagree.</exception>
    public static LoadedModel Load(string path, ModelLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new ModelLoadOptions();
        IMatMulKernel kernel = options.Kernel ?? KernelSelector.Create(options.KernelOptions);
        if (Directory.Exists(path)) return LoadHuggingFace(path, options, kernel);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "no such file or directory");
        if (options.WeightsFile is not null) throw new AgileQuantException("--weights applies to a Hugging Face model directory, not to a single file.");
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return LoadQuantizedCheckpoint(path, options, kernel);
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return LoadGguf(path, options, kernel);
        WeightMemoryBudget.Enforce(path, Llama2cCheckpoint.ReadConfig(path), options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        TransformerWeights weights = Llama2cCheckpoint.Load(path);
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights);
        var model = new TransformerModel(weights, kernel);
        string? tokenizerPath = options.TokenizerPath ?? FindLlama2cTokenizer(path);
        Tokenizer? tokenizer = tokenizerPath is null ? null : LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
        return new LoadedModel(model, tokenizer, path, "llama2c");
    }

    /// <summary>
    /// Loads a tokenizer file — llama2.c <c>.bin</c>, SentencePiece <c>.model</c>, Hugging Face <c>tokenizer.json</c>
    /// (byte-level BPE) or a GGUF vocabulary — and checks it fits a model of <paramref name="vocabSize"/> tokens.
    /// </summary>
    public static Tokenizer LoadTokenizer(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "tokenizer file not found");
        if (path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)) return Llama2cTokenizer.Load(path, vocabSize);
        Tokenizer tokenizer = Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".model" => SpmVocabularyTokenizer.LoadSentencePieceModel(path),
            ".json" => ByteLevelBpeTokenizerLoader.FromTokenizerJson(path),
            ".gguf" => GgufTokenizerLoader.Load(path),
            _ => throw new ModelFormatException(path, null, "unknown tokenizer format: expected a llama2.c .bin, a SentencePiece .model, a tokenizer.json or a .gguf vocabulary"),
        };
        CheckFits(path, tokenizer, vocabSize);
        return tokenizer;
    }

    /// <summary>Refuses a tokenizer that can produce ids outside a <paramref name="vocabSize"/>-token model (it may have fewer, e.g. padded vocabularies).</summary>
    private static void CheckFits(string path, Tokenizer tokenizer, int vocabSize)
    {
        int size = tokenizer switch
        {
            ScoredMergeTokenizer scored => scored.VocabSize,
            BpeTokenizer bpe => bpe.Vocabulary.Count,
            LlamaTokenizer spm => spm.Vocabulary.Count,
            _ => -1,
        };
        if (size > vocabSize) throw new ModelFormatException(path, null, $"the tokenizer has {size} tokens, but the model's vocabulary has only {vocabSize} (vocab size mismatch)");
    }

    private static LoadedModel LoadQuantizedCheckpoint(string path, ModelLoadOptions options, IMatMulKernel kernel)
    {
        using (SafeTensorsFile file = SafeTensorsFile.Open(path))
            if (!QuantizedCheckpointReader.IsQuantizedCheckpoint(file.Metadata))
                throw new ModelFormatException(path, null,
                    "expected an AgileQuant quantized checkpoint (metadata key agilequant.format), found a plain safetensors file; pass its Hugging Face model directory instead");
        QuantizedCheckpoint checkpoint = QuantizedCheckpointReader.Load(path);
        TransformerWeights weights = checkpoint.Weights;
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights);
        // The scheme also decides the runtime beyond the weights: 4-bit-activation kernel, attention quantization, mixed tokens.
        RuntimeOptions runtime = QuantizedCheckpointReader.RuntimeOptionsFor(checkpoint, kernel);
        var model = new TransformerModel(weights, kernel, runtime);
        string? tokenizerPath = options.TokenizerPath ?? FindLlama2cTokenizer(path);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Tokenizer? tokenizer = null;
        if (tokenizerPath is not null) tokenizer = LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
        else if (new[] { "tokenizer.model", "tokenizer.json", "vocab.json" }.Any(f => File.Exists(Path.Combine(dir, f))))
        {
            tokenizer = HfTokenizerLoader.LoadFromDirectory(dir);
            CheckFits(dir, tokenizer, weights.Config.VocabSize);
        }
        return new LoadedModel(model, tokenizer, path, "agilequant");
    }

    private static LoadedModel LoadGguf(string path, ModelLoadOptions options, IMatMulKernel kernel)
    {
        GgufFile gguf = GgufFile.Read(path);
        TransformerConfig config = GgufModelReader.ReadConfig(gguf);
        GgufModelReader.EnforceBudget(gguf, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        TransformerWeights weights = GgufModelReader.ReadWeights(gguf, config);
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights);
        var model = new TransformerModel(weights, kernel);
        Tokenizer? tokenizer = null;
        if (options.TokenizerPath is not null) tokenizer = LoadTokenizer(options.TokenizerPath, config.VocabSize);
        else if (gguf.TryGetValue("tokenizer.ggml.model", out _))
        {
            tokenizer = GgufTokenizerLoader.Create(gguf);
            CheckFits(path, tokenizer, config.VocabSize);
        }
        return new LoadedModel(model, tokenizer, path, "gguf");
    }

    private static string? FindLlama2cTokenizer(string modelPath)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        string standard = Path.Combine(dir, "tokenizer.bin");
        if (File.Exists(standard)) return standard;
        string[] candidates = Directory.GetFiles(dir, "tok*.bin");
        return candidates.Length == 1 ? candidates[0] : null;
    }

    private static LoadedModel LoadHuggingFace(string dir, ModelLoadOptions options, IMatMulKernel kernel)
    {
        HfConfig config = HfConfig.Load(Path.Combine(dir, "config.json"));
        IHfArchitecture architecture = HfArchitectures.For(config);
        TransformerConfig runtimeConfig = architecture.ReadConfig(config);
        try { runtimeConfig.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(config.FilePath, null, e.Message, e); }
        WeightMemoryBudget.Enforce(config.FilePath, runtimeConfig, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        string weightsPath = options.WeightsFile is null ? dir : ResolveWeightsFile(dir, options.WeightsFile);
        TransformerWeights weights;
        using (SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(weightsPath))
            weights = architecture.ReadWeights(runtimeConfig, new HfTensorReader(checkpoint));
        if (options.CheckFiniteWeights) RequireFiniteWeights(weightsPath, weights);
        var model = new TransformerModel(weights, kernel);
        Tokenizer? tokenizer = null;
        if (options.TokenizerPath is not null) tokenizer = LoadTokenizer(options.TokenizerPath, runtimeConfig.VocabSize);
        else if (new[] { "tokenizer.model", "tokenizer.json", "vocab.json" }.Any(f => File.Exists(Path.Combine(dir, f))))
        {
            tokenizer = HfTokenizerLoader.LoadFromDirectory(dir);
            CheckFits(dir, tokenizer, runtimeConfig.VocabSize);
        }
        return new LoadedModel(model, tokenizer, weightsPath, "huggingface");
    }

    private static void RequireFiniteWeights(string path, TransformerWeights weights)
    {
        if (WeightsHealthCheck.FindFirstNonFinite(weights) is NonFiniteWeight bad)
            throw new ModelFormatException(path, bad.Tensor,
                $"expected finite weights, found {bad.Value} at element {bad.Index} (corrupt file or a bad conversion; ModelLoadOptions.CheckFiniteWeights = false skips this check)");
    }

    private static string ResolveWeightsFile(string dir, string weightsFile)
    {
        string path = Path.IsPathRooted(weightsFile) ? weightsFile : Path.Combine(dir, weightsFile);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "the weights file given with --weights does not exist");
        return path;
    }
}
