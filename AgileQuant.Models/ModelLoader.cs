using AgileQuant.Core;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.ChatClient;
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

    /// <summary>
    /// The kernels chosen at load (<see cref="KernelSelector.Create"/>): instruction set (default: the widest this CPU
    /// supports), threads per matrix multiplication (default 0: one per processor) and activation bits. The one place to
    /// choose kernel and threads.
    /// </summary>
    public KernelOptions KernelOptions { get; init; } = new();

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
}

/// <summary>Loads llama2.c checkpoints, Hugging Face model directories and GGUF files of every family in <see cref="Architectures.ArchitectureRegistry"/>, and AgileQuant quantized checkpoints.</summary>
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
        ArgumentNullException.ThrowIfNull(options.KernelOptions, nameof(options));
        if (options.KernelOptions.Threads < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.KernelOptions.Threads, "ModelLoadOptions.KernelOptions.Threads must be ≥ 0.");
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
        return loaded.WithModel(new TransformerModel(model.Weights, model.Kernel, runtime));
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
        KernelSet kernel = KernelSelector.Create(options.KernelOptions);
        if (Directory.Exists(path)) return LoadHuggingFace(path, options, kernel, progress, cancel);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "no such file or directory");
        if (options.WeightsFile is not null) throw new AgileQuantException("ModelLoadOptions.WeightsFile applies to a Hugging Face model directory, not to a single file.");
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return LoadQuantizedCheckpoint(path, options, kernel, progress, cancel);
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return LoadGguf(path, options, kernel, progress, cancel);
        TransformerConfig header = Llama2cCheckpoint.ReadConfig(path);
        WeightMemoryBudget.Enforce(path, header, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        string? tokenizerPath = options.TokenizerPath ?? FindLlama2cTokenizer(path);
        if (header.VocabSize < Llama2cTokenizer.MinVocabSize && tokenizerPath?.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) == true)
            throw new ModelFormatException(path, null,
                $"header field vocab_size is {header.VocabSize}, but a llama2.c tokenizer ({tokenizerPath}) has at least {Llama2cTokenizer.MinVocabSize} tokens (256 bytes and 3 specials)");
        TransformerWeights weights = Llama2cCheckpoint.Load(path, progress, cancel);
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights, progress);
        var model = new TransformerModel(weights, kernel);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        Tokenizer? tokenizer = tokenizerPath is null ? null : LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        // llama2.c's run.c ends generation at BOS (id 1), which its models write to start the next story.
        return new LoadedModel(model, tokenizer, path, "llama2c")
        {
            EndTokenIds = [weights.Config.EosTokenId, weights.Config.BosTokenId],
            TokenizerSource = tokenizerPath is null ? null : new TokenizerSource([Path.GetFullPath(tokenizerPath)], false),
        };
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
            return new LoadedModel(quantized, loaded.Tokenizer, loaded.SourcePath, loaded.Format)
            {
                EndTokenIds = loaded.EndTokenIds,
                TokenizerSource = loaded.TokenizerSource,
                ChatTemplateText = loaded.ChatTemplateText,
                ChatTemplateOrigin = loaded.ChatTemplateOrigin,
                SpecialTokenTokenizerFactory = loaded.SpecialTokenTokenizerFactory,
            };
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
        if (path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
            return vocabSize >= Llama2cTokenizer.MinVocabSize ? Llama2cTokenizer.Load(path, vocabSize)
                : throw new ModelFormatException(path, null, $"a llama2.c tokenizer has at least {Llama2cTokenizer.MinVocabSize} tokens (256 bytes and 3 specials), but the model's vocabulary has {vocabSize}");
        Tokenizer tokenizer = Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".model" => SpmVocabularyTokenizer.LoadSentencePieceModel(path),
            ".json" => HfTokenizerLoader.LoadTokenizerJson(path),
            ".gguf" => GgufTokenizerLoader.Load(path),
            _ => throw new ModelFormatException(path, null, "unknown tokenizer format: expected a llama2.c .bin, a SentencePiece .model, a tokenizer.json or a .gguf vocabulary"),
        };
        CheckFits(path, tokenizer, vocabSize);
        return tokenizer;
    }

    /// <summary>Refuses a tokenizer that can produce ids outside a <paramref name="vocabSize"/>-token model (it may have fewer, e.g. padded vocabularies).</summary>
    internal static void CheckFits(string path, Tokenizer tokenizer, int vocabSize)
    {
        int size = tokenizer switch
        {
            ScoredMergeTokenizer scored => scored.VocabSize,
            BpeTokenizer bpe => bpe.Vocabulary.Count,
            IgnoreMergesBpeTokenizer wholeWords => wholeWords.Vocabulary.Count,
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
        // The tokenizer: the one given, else the one the checkpoint carries, else one beside it (as for llama2.c, or Hugging Face files).
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? tokenizerPath = options.TokenizerPath ?? (checkpoint.Tokenizer is null ? FindLlama2cTokenizer(path) : null);
        Tokenizer? tokenizer = null;
        TokenizerSource? source = null;
        Func<Tokenizer>? parsingSpecialTokens = null;
        (string Text, string Origin)? template = null;
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        if (tokenizerPath is not null)
        {
            tokenizer = LoadTokenizer(tokenizerPath, weights.Config.VocabSize);
            source = new TokenizerSource([Path.GetFullPath(tokenizerPath)], false);
            parsingSpecialTokens = SpecialTokenTokenizer(tokenizerPath);
        }
        else if (checkpoint.Tokenizer is { } carried)
        {
            tokenizer = carried.Load(path, weights.Config.VocabSize);
            if (carried.CanParseSpecialTokens) parsingSpecialTokens = () => carried.Load(path, weights.Config.VocabSize, parseSpecialTokens: true);
        }
        else if (HfTokenizerFiles(dir) is { Count: > 0 } files)
        {
            tokenizer = HfTokenizerLoader.LoadFromDirectory(dir);
            CheckFits(dir, tokenizer, weights.Config.VocabSize);
            source = new TokenizerSource(files, true);
            parsingSpecialTokens = () => HfTokenizerLoader.LoadFromDirectory(dir, parseSpecialTokens: true);
            template = ModelChatTemplate.ReadHfDirectory(dir);
        }
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        // The chat template the checkpoint carries (its source model's), else that of the Hugging Face tokenizer beside it.
        if (checkpoint.Tokenizer?.ChatTemplate is { } carriedTemplate)
            template = (carriedTemplate, $"{path}: metadata '{QuantizedCheckpointLayout.TokenizerKey}' chat_template");
        return new LoadedModel(model, tokenizer, path, "agilequant")
        {
            EndTokenIds = checkpoint.Tokenizer?.EndTokenIds ?? [weights.Config.EosTokenId],
            TokenizerSource = source,
            ChatTemplateText = template?.Text,
            ChatTemplateOrigin = template?.Origin,
            SpecialTokenTokenizerFactory = parsingSpecialTokens,
        };
    }

    /// <summary>The Hugging Face tokenizer files present in <paramref name="dir"/> (none when it has no tokenizer.model, tokenizer.json or vocab.json).</summary>
    private static IReadOnlyList<string> HfTokenizerFiles(string dir)
    {
        if (!new[] { "tokenizer.model", "tokenizer.json", "vocab.json" }.Any(f => File.Exists(Path.Combine(dir, f)))) return [];
        return new[] { "tokenizer_config.json", "tokenizer.model", "tokenizer.json", "vocab.json", "merges.txt" }
            .Select(f => Path.Combine(Path.GetFullPath(dir), f)).Where(File.Exists).ToArray();
    }

    /// <summary>EOS, plus the <c>eos_token_id</c> (a number or a list) of <c>generation_config.json</c> when the folder has one.</summary>
    private static IReadOnlyList<int> HfEndTokens(string dir, TransformerConfig config)
    {
        var ids = new List<int> { config.EosTokenId };
        string path = Path.Combine(dir, "generation_config.json");
        if (!File.Exists(path)) return ids;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && doc.RootElement.TryGetProperty("eos_token_id", out var eos))
            {
                IEnumerable<System.Text.Json.JsonElement> values = eos.ValueKind == System.Text.Json.JsonValueKind.Array ? eos.EnumerateArray() : [eos];
                foreach (var value in values)
                    if (value.ValueKind == System.Text.Json.JsonValueKind.Number && value.TryGetInt32(out int id) && (uint)id < (uint)config.VocabSize) ids.Add(id);
            }
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ModelFormatException(path, null, $"expected well-formed JSON, found an error: {e.Message}", e);
        }
        return ids;

    }

    private static LoadedModel LoadGguf(string path, ModelLoadOptions options, IMatMulKernel kernel,
        IProgress<ModelLoadProgress>? progress, CancellationToken cancel)
    {
        GgufFile gguf = GgufFile.Read(path);
        TransformerConfig config = GgufModelReader.ReadConfig(gguf);
        GgufModelReader.EnforceBudget(gguf, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        cancel.ThrowIfCancellationRequested();
        TransformerWeights weights = GgufModelReader.ReadWeights(gguf, config, kernel); // each matrix repacked for the kernels as it is read
        cancel.ThrowIfCancellationRequested();
        if (options.CheckFiniteWeights) RequireFiniteWeights(path, weights, progress);
        var model = new TransformerModel(weights, kernel);
        // Converting and repacking left short-lived arrays (staging, the row-major copy of each tensor dropped once it was
        // repacked): collect them now, so that inference reuses that memory rather than growing the resident set on top of
        // it before the collector's next turn; aggressive, so that the free memory is also handed back to the OS now rather
        // than at the collector's own pace (measured in docs/benchmarks.md, "Memory and load time (issue 21)"). Small models
        // (no FFN matrix of GgufModelReader.LargeTensorElements): the plain full collection.
        if ((long)config.HiddenSize * config.IntermediateSize >= GgufModelReader.LargeTensorElements) GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        else GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
        Tokenizer? tokenizer = null;
        TokenizerSource? source = null;
        Func<Tokenizer>? parsingSpecialTokens = null;
        IReadOnlyList<int> endTokens = [config.EosTokenId];
        if (options.TokenizerPath is not null)
        {
            tokenizer = LoadTokenizer(options.TokenizerPath, config.VocabSize);
            source = new TokenizerSource([Path.GetFullPath(options.TokenizerPath)], false);
            parsingSpecialTokens = SpecialTokenTokenizer(options.TokenizerPath);
        }
        else if (gguf.TryGetValue("tokenizer.ggml.model", out _))
        {
            tokenizer = GgufTokenizerLoader.Create(gguf);
            CheckFits(path, tokenizer, config.VocabSize);
            parsingSpecialTokens = () => GgufTokenizerLoader.Create(gguf, parseSpecialTokens: true);
            // Every end-of-generation token llama.cpp takes from the vocabulary (EOS, EOT, EOM, <|im_end|>, <end_of_turn>, …).
            endTokens = [config.EosTokenId, .. GgufTokenizerLoader.ReadSpecialTokens(gguf).EndOfGeneration];
        }
        bool hasTemplate = gguf.TryGetValue(ModelChatTemplate.GgufKey, out _);
        return new LoadedModel(model, tokenizer, path, "gguf")
        {
            TokenizerSource = source,
            EndTokenIds = endTokens,
            ChatTemplateText = hasTemplate ? gguf.GetString(ModelChatTemplate.GgufKey) : null,
            ChatTemplateOrigin = hasTemplate ? $"{path}: metadata '{ModelChatTemplate.GgufKey}'" : null,
            SpecialTokenTokenizerFactory = parsingSpecialTokens,
        };
    }

    /// <summary>Builds the tokenizer at <paramref name="path"/> with special tokens parsed, for chat prompts (null for llama2.c tokenizers, which have none to parse).</summary>
    private static Func<Tokenizer>? SpecialTokenTokenizer(string path) =>
        Directory.Exists(path) || Path.GetExtension(path).ToLowerInvariant() is ".gguf" or ".json" or ".model"
            ? () => TokenizerFile.Load(path, parseSpecialTokens: true).Tokenizer
            : null;

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
        ArchitectureDescription family = ArchitectureRegistry.ForHfConfig(config);
        TransformerConfig runtimeConfig = family.ReadHfConfig(config);
        ConfigValueChecks.Require(config.FilePath, runtimeConfig, config.ValueKeys());
        try { runtimeConfig.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(config.FilePath, null, e.Message, e); }
        WeightMemoryBudget.Enforce(config.FilePath, runtimeConfig, options.MaxWeightBytes ?? WeightMemoryBudget.DefaultBudget);
        string weightsPath = options.WeightsFile is null ? dir : ResolveWeightsFile(dir, options.WeightsFile);
        TransformerWeights weights;
        using (SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(weightsPath, memoryMap: options.UseMemoryMap))
            weights = HfTensorReader.ReadWeights(family, runtimeConfig, checkpoint, progress, cancel);
        if (options.CheckFiniteWeights) RequireFiniteWeights(weightsPath, weights, progress);
        var model = new TransformerModel(weights, kernel);
        Tokenizer? tokenizer = null;
        TokenizerSource? source = null;
        Func<Tokenizer>? parsingSpecialTokens = null;
        IReadOnlyList<int> endTokens = HfEndTokens(dir, runtimeConfig);
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 0, 1));
        if (options.TokenizerPath is not null)
        {
            tokenizer = LoadTokenizer(options.TokenizerPath, runtimeConfig.VocabSize);
            source = new TokenizerSource([Path.GetFullPath(options.TokenizerPath)], false);
            parsingSpecialTokens = SpecialTokenTokenizer(options.TokenizerPath);
        }
        else if (HfTokenizerFiles(dir) is { Count: > 0 } files)
        {
            LoadedTokenizer loadedTokenizer = HfTokenizerLoader.LoadDirectory(dir, addBos: null, parseSpecialTokens: false);
            tokenizer = loadedTokenizer.Tokenizer;
            CheckFits(dir, tokenizer, runtimeConfig.VocabSize);
            source = new TokenizerSource(files, true);
            parsingSpecialTokens = () => HfTokenizerLoader.LoadFromDirectory(dir, parseSpecialTokens: true);
            // tokenizer_config.json's eos_token too (e.g. <|eot_id|>, <|im_end|>, <end_of_turn>, where config.json names another EOS).
            endTokens = [.. endTokens, .. loadedTokenizer.Special.EndOfGeneration.Where(id => (uint)id < (uint)runtimeConfig.VocabSize)];
        }
        progress?.Report(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1));
        (string Text, string Origin)? template = ModelChatTemplate.ReadHfDirectory(dir);
        return new LoadedModel(model, tokenizer, weightsPath, "huggingface")
        {
            EndTokenIds = endTokens,
            TokenizerSource = source,
            ChatTemplateText = template?.Text,
            ChatTemplateOrigin = template?.Origin,
            SpecialTokenTokenizerFactory = parsingSpecialTokens,
        };
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
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "the weights file named by ModelLoadOptions.WeightsFile does not exist");
        return path;
    }
}
