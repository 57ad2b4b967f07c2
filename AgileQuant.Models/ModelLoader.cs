using AgileQuant.Core;
using AgileQuant.Core.Quantization;
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

/// <summary>
/// Options for <see cref="ModelLoader.Load(ModelLoadOptions, IProgress{ModelLoadProgress}?, CancellationToken)"/>: which
/// model, how to read it, which kernels run it, and an optional quantization applied after loading.
/// </summary>
public sealed record ModelLoadOptions
{
    /// <summary>
    /// The model: a llama2.c <c>.bin</c>, a Hugging Face directory or an AgileQuant quantized checkpoint
    /// (<c>.safetensors</c>). Required by the overloads that take only options; the <c>Load(string path, …)</c> overload sets it.
    /// </summary>
    public string? Path { get; init; }

    /// <summary>Tokenizer file to use instead of the one found beside the model.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>For a Hugging Face directory: which weights file to read (e.g. <c>model.f16.safetensors</c>).</summary>
    public string? WeightsFile { get; init; }

    /// <summary>Instruction set and thread count of the kernels chosen at load (ignored when <see cref="Kernel"/> is set).</summary>
    public KernelOptions KernelOptions { get; init; } = new();

    /// <summary>Threads per matrix multiplication, overriding <see cref="KernelOptions"/>' (null: keep it; 0: one per processor).</summary>
    public int? Threads { get; init; }

    /// <summary>A kernel to run the model with instead of choosing one from <see cref="KernelOptions"/> (the kernel override).</summary>
    public IMatMulKernel? Kernel { get; init; }

    /// <summary>
    /// Read safetensors files through a read-only memory map (default), or, when false, with ordinary reads into
    /// process memory (for file systems where mapping fails or is slow; needs the file's size in memory while loading).
    /// llama2.c files are read sequentially either way. The weights are copied into the kernels' layouts while loading,
    /// so no file stays open once <see cref="ModelLoader.Load(ModelLoadOptions, IProgress{ModelLoadProgress}?, CancellationToken)"/> returns.
    /// </summary>
    public bool UseMemoryMap { get; init; } = true;

    /// <summary>
    /// A quantization to apply after loading an FP32 model (e.g. <c>QuantizationConfig.Parse("W4A8-RTN")</c>); null keeps
    /// the model as stored. GPTQ configurations need calibration sequences in <see cref="QuantizationOptions"/>.
    /// </summary>
    public QuantizationConfig? Quantization { get; init; }

    /// <summary>Group size and calibration data for <see cref="Quantization"/> (its progress and cancellation come from the load's).</summary>
    public ModelQuantizationOptions? QuantizationOptions { get; init; }

    /// <summary>
    /// Most bytes the FP32 weights may take, checked against the size the config or header implies before any tensor
    /// is read (null: <see cref="WeightMemoryBudget.DefaultBudget"/>, the memory available to the process).
    /// </summary>
    public long? MaxWeightBytes { get; init; }

    /// <summary>Check every weight for NaN and infinity after loading (<see cref="WeightsHealthCheck"/>); on by default.</summary>
    public bool CheckFiniteWeights { get; init; } = true;

    /// <summary>
    /// How contexts of the loaded model store keys and values (<see cref="RuntimeOptions.KvCache"/>); null keeps the
    /// default: exact (FP32, or a quantized scheme's own KV codes).
    /// </summary>
    public KvCacheType? KvCache { get; init; }

    /// <summary>Most tokens a context of the loaded model holds (<see cref="RuntimeOptions.ContextLength"/>); null: the model's own context length.</summary>
    public int? ContextLength { get; init; }

    /// <summary>The kernel options with <see cref="Threads"/> applied.</summary>
    internal KernelOptions EffectiveKernelOptions => Threads is int threads ? KernelOptions with { Threads = threads } : KernelOptions;
}

/// <summary>Loads llama2.c checkpoints and Hugging Face model directories (LLaMA, OPT, BLOOM).</summary>
public static class ModelLoader
{
    /// <summary>
    /// Loads <paramref name="path"/>: a llama2.c <c>.bin</c> file (tokenizer: <c>tokenizer.bin</c> or a single
    /// <c>tok*.bin</c> beside it) or a Hugging Face directory (<c>config.json</c> + safetensors; tokenizer:
    /// <c>tokenizer.model</c>, <c>tokenizer.json</c> or <c>vocab.json</c> + <c>merges.txt</c>), or an AgileQuant quantized
    /// checkpoint: a <c>.safetensors</c> file whose metadata has <c>agilequant.format</c> (tokenizer: as for llama2.c,
    /// else a Hugging Face tokenizer file beside it), or a LLaMA-family <c>.gguf</c> file (tokenizer: its own metadata). <paramref name="path"/> replaces <see cref="ModelLoadOptions.Path"/>.
    /// </summary>
    /// <param name="path">The model file or directory.</param>
    /// <param name="options">How to load it (null: defaults).</param>
    /// <param name="progress">Receives each stage's progress (tensors read, layers quantized).</param>
    /// <param name="cancellationToken">Stops the load between tensors or layers.</param>
    /// <returns>The model; dispose it when done.</returns>
    /// <exception cref="ModelFormatException">A file is missing or malformed, or tokenizer and model disagree.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static LoadedModel Load(string path, ModelLoadOptions? options = null, IProgress<ModelLoadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Load((options ?? new ModelLoadOptions()) with { Path = path }, progress, cancellationToken);
    }

    /// <summary>Loads the model at <see cref="ModelLoadOptions.Path"/> (see <see cref="Load(string, ModelLoadOptions?, IProgress{ModelLoadProgress}?, CancellationToken)"/>).</summary>
    /// <param name="options">What to load and how; <see cref="ModelLoadOptions.Path"/> is required.</param>
    /// <param name="progress">Receives each stage's progress (tensors read, layers quantized).</param>
    /// <param name="cancellationToken">Stops the load between tensors or layers.</param>
    /// <returns>The model; dispose it when done.</returns>
    /// <exception cref="ModelFormatException">A file is missing or malformed, or tokenizer and model disagree.</exception>
    /// <exception cref="AgileQuantException">Options that do not fit the model (e.g. a quantization of an already quantized checkpoint).</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static LoadedModel Load(ModelLoadOptions options, IProgress<ModelLoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.Path)) throw new ArgumentException("ModelLoadOptions.Path must name the model file or directory.", nameof(options));
        if (options.Threads is < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "ModelLoadOptions.Threads must be ≥ 0.");
        if (options.ContextLength is <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.ContextLength, "ModelLoadOptions.ContextLength must be positive.");
        cancellationToken.ThrowIfCancellationRequested();
        LoadedModel loaded = LoadAsStored(options.Path, options, progress, cancellationToken);
        if (options.Quantization is not null) loaded = Quantize(loaded, options, progress, cancellationToken);
        return WithContextOptions(loaded, options);
    }

    /// <summary><paramref name="loaded"/> with the options' KV cache type and context length, when they set any.</summary>
    private static LoadedModel WithContextOptions(LoadedModel loaded, ModelLoadOptions options)
    {
        if (options.KvCache is null && options.ContextLength is null) return loaded;
        TransformerModel model = loaded.Model;
        RuntimeOptions runtime = model.Options with
        {
            KvCache = options.KvCache ?? model.Options.KvCache,
            ContextLength = options.ContextLength ?? model.Options.ContextLength,
        };
        return new LoadedModel(new TransformerModel(model.Weights, model.Kernel, runtime), loaded.Tokenizer, loaded.SourcePath, loaded.Format);
    }

    /// <summary>
    /// <see cref="Load(ModelLoadOptions, IProgress{ModelLoadProgress}?, CancellationToken)"/> on the thread pool, so a UI
    /// or server thread stays free; progress and cancellation as there.
    /// </summary>
    /// <param name="options">What to load and how; <see cref="ModelLoadOptions.Path"/> is required.</param>
    /// <param name="progress">Receives each stage's progress.</param>
    /// <param name="cancellationToken">Stops the load between tensors or layers.</param>
    public static Task<LoadedModel> LoadAsync(ModelLoadOptions options, IProgress<ModelLoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Task.Run(() => Load(options, progress, cancellationToken), cancellationToken);
    }

    private static LoadedModel LoadAsStored(string path, ModelLoadOptions options, IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        IMatMulKernel kernel = options.Kernel ?? KernelSelector.Create(options.EffectiveKernelOptions);
        if (Directory.Exists(path)) return LoadHuggingFace(path, options, kernel, progress, cancel);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "no such file or directory");
        if (options.WeightsFile is not null) throw new AgileQuantException("--weights applies to a Hugging Face model directory, not to a single file.");
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return LoadQuantizedCheckpoint(path, options, kernel, progress, cancel);
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return LoadGguf(path, options, kernel, progress, cancel);
        WeightMemoryBudget.Enforce(path, Llama2cCheckpoint.ReadConfig(path), options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        TransformerWeights weights = Llama2cCheckpoint.Load(path, progress, cancel);
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights, progress);
        var model = new TransformerModel(weights, kernel);
        string? tokenizerPath = options.TokenizerPath ?? FindLlama2cTokenizer(path);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        Tokenizer? tokenizer = tokenizerPath is null ? null : LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        return new LoadedModel(model, tokenizer, path, "llama2c");
    }

    private static LoadedModel Quantize(LoadedModel loaded, ModelLoadOptions options, IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        using (loaded) // the as-stored model is released whether quantization succeeds, fails or is cancelled
        {
            if (loaded.Format == "agilequant")
                throw new AgileQuantException($"{loaded.SourcePath} is already a quantized checkpoint; load it without ModelLoadOptions.Quantization.");
            int layers = loaded.Model.Config.NumLayers, done = 0;
            IProgress<string>? userProgress = options.QuantizationOptions?.Progress;
            ModelQuantizationOptions quantization = (options.QuantizationOptions ?? new ModelQuantizationOptions()) with
            {
                CancellationToken = cancel,
                Progress = new LayerCounter(line =>
                {
                    userProgress?.Report(line);
                    progress?.Report(new ModelLoadProgress(ModelLoadStage.Quantizing, ++done, layers));
                }),
            };
            progress?.Report(new ModelLoadProgress(ModelLoadStage.Quantizing, 0, layers));
            TransformerModel quantized = ModelQuantizer.Quantize(loaded.Model, options.Quantization!, quantization);
            return new LoadedModel(quantized, loaded.Tokenizer, loaded.SourcePath, loaded.Format);
        }
    }

    /// <summary>Reports on the quantizing thread (the quantizer reports once per layer, in order).</summary>
    private sealed class LayerCounter(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
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

    private static LoadedModel LoadQuantizedCheckpoint(string path, ModelLoadOptions options, IMatMulKernel kernel, IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        using (SafeTensorsFile file = SafeTensorsFile.Open(path, options.UseMemoryMap))
            if (!QuantizedCheckpointReader.IsQuantizedCheckpoint(file.Metadata))
                throw new ModelFormatException(path, null,
                    "expected an AgileQuant quantized checkpoint (metadata key agilequant.format), found a plain safetensors file; pass its Hugging Face model directory instead");
        progress?.Report(new ModelLoadProgress(ModelLoadStage.ReadingWeights, 0, 1));
        QuantizedCheckpoint checkpoint = QuantizedCheckpointReader.Load(path, options.UseMemoryMap);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.ReadingWeights, 1, 1));
        cancel.ThrowIfCancellationRequested();
        TransformerWeights weights = checkpoint.Weights;
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights, progress);
        // The scheme also decides the runtime beyond the weights: 4-bit-activation kernel, attention quantization, mixed tokens.
        RuntimeOptions runtime = QuantizedCheckpointReader.RuntimeOptionsFor(checkpoint, kernel);
        var model = new TransformerModel(weights, kernel, runtime);
        string? tokenizerPath = options.TokenizerPath ?? FindLlama2cTokenizer(path);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Tokenizer? tokenizer = null;
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        if (tokenizerPath is not null) tokenizer = LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
        else if (new[] { "tokenizer.model", "tokenizer.json", "vocab.json" }.Any(f => File.Exists(Path.Combine(dir, f))))
        {
            tokenizer = HfTokenizerLoader.LoadFromDirectory(dir);
            CheckFits(dir, tokenizer, weights.Config.VocabSize);
        }
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        return new LoadedModel(model, tokenizer, path, "agilequant");
    }

    private static LoadedModel LoadGguf(string path, ModelLoadOptions options, IMatMulKernel kernel,
        IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        GgufFile gguf = GgufFile.Read(path);
        TransformerConfig config = GgufModelReader.ReadConfig(gguf);
        GgufModelReader.EnforceBudget(gguf, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        cancel.ThrowIfCancellationRequested();
        TransformerWeights weights = GgufModelReader.ReadWeights(gguf, config);
        // Converting produced about the weights' size again in short-lived arrays (staging, the row-major copies the
        // packed formats drop once repacked): collect them now, so that inference reuses that memory rather than
        // growing the resident set on top of it before the collector's next turn (W4A8 llama7b-4l e2e peak 1793 -> 1585 MiB).
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
        cancel.ThrowIfCancellationRequested();
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights, progress);
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

    private static LoadedModel LoadHuggingFace(string dir, ModelLoadOptions options, IMatMulKernel kernel, IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        HfConfig config = HfConfig.Load(Path.Combine(dir, "config.json"));
        IHfArchitecture architecture = HfArchitectures.For(config);
        TransformerConfig runtimeConfig = architecture.ReadConfig(config);
        try { runtimeConfig.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(config.FilePath, null, e.Message, e); }
        WeightMemoryBudget.Enforce(config.FilePath, runtimeConfig, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        string weightsPath = options.WeightsFile is null ? dir : ResolveWeightsFile(dir, options.WeightsFile);
        TransformerWeights weights;
        using (SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(weightsPath, memoryMap: options.UseMemoryMap))
            weights = architecture.ReadWeights(runtimeConfig, new HfTensorReader(checkpoint, progress, cancel));
        if (options.CheckFiniteWeights) RequireFiniteWeights(weightsPath, weights, progress);
        var model = new TransformerModel(weights, kernel);
        Tokenizer? tokenizer = null;
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        if (options.TokenizerPath is not null) tokenizer = LoadTokenizer(options.TokenizerPath, runtimeConfig.VocabSize);
        else if (new[] { "tokenizer.model", "tokenizer.json", "vocab.json" }.Any(f => File.Exists(Path.Combine(dir, f))))
        {
            tokenizer = HfTokenizerLoader.LoadFromDirectory(dir);
            CheckFits(dir, tokenizer, runtimeConfig.VocabSize);
        }
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        return new LoadedModel(model, tokenizer, weightsPath, "huggingface");
    }

    private static void RequireFiniteWeights(string path, TransformerWeights weights, IProgress<ModelLoadProgress>? progress)
    {
        progress?.Report(new ModelLoadProgress(ModelLoadStage.CheckingWeights, 0, 1));
        NonFiniteWeight? found = WeightsHealthCheck.FindFirstNonFinite(weights);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.CheckingWeights, 1, 1));
        if (found is NonFiniteWeight bad)
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
