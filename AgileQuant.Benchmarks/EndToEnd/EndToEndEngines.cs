using System.Diagnostics;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>One engine configuration with a model loaded: prefill and decode from an empty context.</summary>
public interface IEndToEndEngine : IDisposable
{
    /// <summary>Feeds <paramref name="tokens"/> to an empty context in one batch (llama.cpp: in batches of its batch size); returns the last position's logit 0 (keeps the work alive).</summary>
    float Prefill(int[] tokens);

    /// <summary>Feeds <paramref name="first"/>, then <paramref name="steps"/> greedy tokens one at a time; returns the time of the steps.</summary>
    TimeSpan Decode(int first, int steps);

    /// <summary>From an empty context: feeds <paramref name="first"/>, then <paramref name="steps"/> greedy tokens one at a time; returns the tokens chosen.</summary>
    int[] GreedyTokens(int first, int steps);

    /// <summary>Logits (vocab) of every position of <paramref name="tokens"/> fed to an empty context.</summary>
    float[][] AllLogits(int[] tokens);

    /// <summary>
    /// From an empty context: feeds <paramref name="tokens"/> up to each of <paramref name="depths"/> (ascending) in batches
    /// of at most <paramref name="chunk"/> tokens, untimed, and at each depth times <paramref name="steps"/> greedy decode
    /// steps (which count towards the next depth); returns the time of each depth's steps.
    /// </summary>
    IReadOnlyList<TimeSpan> DecodeAtDepths(int[] tokens, IReadOnlyList<int> depths, int steps, int chunk);

    /// <summary>Bytes the engine's KV cache holds now (NaN when the engine does not say).</summary>
    double KvCacheBytes { get; }
}

/// <summary>The KV cache type of a comparison: ours by <see cref="KvCacheType"/>, llama.cpp's by its K/V cache types.</summary>
public static class EngineKvCache
{
    /// <summary>Our type for <paramref name="name"/> (auto, f32, f16, q8, q4); null for auto (the exact default).</summary>
    public static KvCacheType? Ours(string name) => name.ToLowerInvariant() switch
    {
        "auto" => null,
        "f32" => KvCacheType.F32,
        "f16" => KvCacheType.F16,
        "q8" => KvCacheType.Q8,
        "q4" => KvCacheType.Q4,
        _ => throw new ArgumentException($"unknown KV type '{name}'; expected auto, f32, f16, q8 or q4"),
    };

    /// <summary>
    /// llama.cpp's cache for <paramref name="name"/>: auto = its defaults (F16 keys and values, flash attention as it chooses);
    /// f16/q8/q4 = F16/Q8_0/Q4_0 keys and values with flash attention on (llama.cpp needs it for a quantized V cache).
    /// </summary>
    public static (GGMLType? Type, bool? FlashAttention) LlamaCpp(string name) => name.ToLowerInvariant() switch
    {
        "auto" => (null, null),
        "f32" => (GGMLType.GGML_TYPE_F32, true),
        "f16" => (GGMLType.GGML_TYPE_F16, true),
        "q8" => (GGMLType.GGML_TYPE_Q8_0, true),
        "q4" => (GGMLType.GGML_TYPE_Q4_0, true),
        _ => throw new ArgumentException($"unknown KV type '{name}'; expected auto, f32, f16, q8 or q4"),
    };
}

/// <summary>The configurations compared: ours (from the GGUF file of <see cref="FileType"/>, or of <see cref="Preset"/>) and llama.cpp's.</summary>
/// <param name="Name">Row label, e.g. <c>AgileQuant W4A8</c>.</param>
/// <param name="FileType">Which GGUF file the engine loads (F32, F16, Q8_0, Q4_0) when <see cref="Preset"/> is null.</param>
/// <param name="LlamaCpp">True for llama.cpp through LLamaSharp.</param>
/// <param name="Scheme">Our quantization scheme name for the runtime options (FP32, W8A8, W4A8-RTN, W4A4-RTN).</param>
/// <param name="PruneRatio">Token pruning β for ours (0: none).</param>
/// <param name="Preset">A llama-quantize preset (e.g. <c>Q4_K_M</c>): the engine loads the F32 file as llama.cpp's own quantizer
/// writes it for that preset (<see cref="LlamaCppPresetFiles"/>), with its per-tensor type mix; null for our own exports.</param>
public sealed record EngineConfig(string Name, Models.Gguf.GgmlType FileType, bool LlamaCpp, string Scheme = "FP32", double PruneRatio = 0, string? Preset = null)
{
    /// <summary>The key of the file this engine loads: the preset, or the file type of our export.</summary>
    public string FileKey => Preset ?? FileType.ToString();

    /// <summary>The table's file column.</summary>
    public string FileLabel => Preset is null ? FileType.ToString() : $"{Preset} (llama-quantize)";

    /// <summary>
    /// The eight (AgileQuant FP32, W8A8, W4A8, W4A4, W4A8 + pruning; llama.cpp F16, Q8_0, Q4_0), then for each
    /// llama-quantize preset in <paramref name="presets"/> both engines on its file (ours with 8-bit activations, the
    /// weights in the formats the file's types load into).
    /// </summary>
    public static IReadOnlyList<EngineConfig> All(double pruneRatio, IReadOnlyList<string>? presets = null) =>
    [
        .. Exported(pruneRatio),
        .. (presets ?? []).SelectMany(p => new EngineConfig[]
        {
            // names distinct from the exported files' rows ("llama.cpp Q4_0" runs our Q4_0 export); W8A16: the file as loaded
            // (the kernels' own 8-bit linear inputs, per-group scales on the block formats; Q/K/V unrounded; exact KV cache),
            // the configuration docs/benchmarks-quality.md rates and the one llama.cpp's own arithmetic matches
            new($"AgileQuant on llama-quantize {p}", Models.Gguf.GgmlType.F32, false, "W8A16", Preset: p),
            new($"llama.cpp on llama-quantize {p}", Models.Gguf.GgmlType.F32, true, Preset: p),
        }),
    ];

    private static IReadOnlyList<EngineConfig> Exported(double pruneRatio) =>
    [
        new("AgileQuant FP32", Models.Gguf.GgmlType.F32, false),
        new("AgileQuant W8A8", Models.Gguf.GgmlType.Q8_0, false, "W8A8"),
        new("AgileQuant W4A8", Models.Gguf.GgmlType.Q4_0, false, "W4A8-RTN"),
        new("AgileQuant W4A4", Models.Gguf.GgmlType.Q4_0, false, "W4A4-RTN"),
        new($"AgileQuant W4A8 + pruning β={pruneRatio:0.##}", Models.Gguf.GgmlType.Q4_0, false, "W4A8-RTN", pruneRatio),
        new("llama.cpp F16", Models.Gguf.GgmlType.F16, true),
        new("llama.cpp Q8_0", Models.Gguf.GgmlType.Q8_0, true),
        new("llama.cpp Q4_0", Models.Gguf.GgmlType.Q4_0, true),
    ];

    /// <summary>
    /// Loads the engine from <paramref name="path"/> with <paramref name="threads"/> threads and room for
    /// <paramref name="context"/> tokens; <paramref name="kvType"/>: the KV cache (<see cref="EngineKvCache"/>);
    /// <paramref name="llamaCppBatches"/>: llama.cpp's batch sizes (<see cref="LlamaCppEngine"/>'s constructor).
    /// </summary>
    public IEndToEndEngine Load(string path, int threads, int context, string kvType = "auto", (int Batch, int MicroBatch)? llamaCppBatches = null) => LlamaCpp
        ? new LlamaCppEngine(path, threads, context, kvType, llamaCppBatches)
        : new AgileQuantEngine(path, threads, Scheme, PruneRatio, kvType, context);
}

/// <summary>
/// Our runtime on a GGUF file: F32 → FP32; Q8_0, Q5_x, Q6_K → grouped W8; Q4_0 → symmetric W4 groups of 32, with the scheme's
/// activation bits (8, or 4 for W4A4), attention quantization and, optionally, progressive token pruning from the middle layer.
/// </summary>
public sealed class AgileQuantEngine : IEndToEndEngine
{
    private readonly TransformerModel _model;

    /// <summary>The model this engine runs.</summary>
    public TransformerModel Model => _model;

    /// <summary>Loads <paramref name="path"/>; <paramref name="kvType"/> and <paramref name="context"/> as <see cref="EngineConfig.Load"/>'s (null context: the file's).</summary>
    public AgileQuantEngine(string path, int threads, string scheme, double pruneRatio, string kvType = "auto", int? context = null)
    {
        IMatMulKernel kernel = KernelSelector.Create(new KernelOptions { Threads = threads });
        int layers = Models.Gguf.GgufModelReader.ReadConfig(Models.Gguf.GgufFile.Read(path)).NumLayers;
        // Progressive pruning from the middle layer: 1 − β of the tokens reach the last layer.
        TokenPruningSchedule? pruning = pruneRatio > 0 ? TokenPruningSchedule.Progressive(layers, layers / 2, pruneRatio) : null;
        TransformerModel model = Cli.Bench.GgufSchemeLoader.Load(path, scheme, kernel, pruning);
        KvCacheType? kv = EngineKvCache.Ours(kvType);
        _model = kv is null && context is null ? model
            : new TransformerModel(model.Weights, model.Kernel, model.Options with { KvCache = kv, ContextLength = context ?? model.ContextLength });
    }

    // One context reused after a Reset (cleared KV cache), as the llama.cpp engine reuses its context: a fresh context
    // per prefill timed its scratch allocation and first-touch page faults too, which weighs on small models.
    private InferenceContext? _context;

    private InferenceContext ClearedContext()
    {
        _context ??= _model.CreateContext();
        _context.Reset();
        return _context;
    }

    /// <inheritdoc />
    public float Prefill(int[] tokens) => ClearedContext().Forward(tokens)[0];

    /// <inheritdoc />
    public TimeSpan Decode(int first, int steps)
    {
        InferenceContext context = ClearedContext();
        float[] logits = context.Forward([first]);
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++) logits = context.Forward([Core.Generation.TokenSampler.ArgMax(logits)]);
        return Stopwatch.GetElapsedTime(start);
    }

    /// <inheritdoc />
    public int[] GreedyTokens(int first, int steps)
    {
        InferenceContext context = ClearedContext();
        float[] logits = context.Forward([first]);
        var chosen = new int[steps];
        for (int i = 0; i < steps; i++) logits = context.Forward([chosen[i] = Core.Generation.TokenSampler.ArgMax(logits)]);
        return chosen;
    }

    /// <inheritdoc />
    public float[][] AllLogits(int[] tokens)
    {
        int vocab = _model.Config.VocabSize;
        float[] all = ClearedContext().Forward(tokens, allLogits: true);
        return Enumerable.Range(0, tokens.Length).Select(p => all.AsSpan(p * vocab, vocab).ToArray()).ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyList<TimeSpan> DecodeAtDepths(int[] tokens, IReadOnlyList<int> depths, int steps, int chunk)
    {
        InferenceContext context = ClearedContext();
        var times = new List<TimeSpan>();
        float[] logits = [];
        int fed = 0;
        foreach (int depth in depths)
        {
            for (; fed < depth; fed += Math.Min(chunk, depth - fed)) logits = context.Forward(tokens.AsSpan(fed, Math.Min(chunk, depth - fed)));
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < steps; i++) logits = context.Forward([Core.Generation.TokenSampler.ArgMax(logits)]);
            times.Add(Stopwatch.GetElapsedTime(start));
            fed += steps;
        }
        return times;
    }

    /// <inheritdoc />
    public double KvCacheBytes => _context?.KvCacheBytes ?? 0;

    /// <inheritdoc />
    public void Dispose() { }
}

/// <summary>llama.cpp through LLamaSharp 0.30.0 (CPU backend), one context reused after clearing its KV cache.</summary>
public sealed class LlamaCppEngine : IEndToEndEngine
{
    private static readonly Lock LogLock = new();
    private static bool s_logConfigured;
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;

    private readonly int _batch;

    /// <summary>llama.cpp's own defaults (common.h): at most 2048 tokens per llama_decode call, computed in micro-batches of 512.</summary>
    public static (int Batch, int MicroBatch) DefaultBatches => (2048, 512);

    /// <summary>
    /// Loads <paramref name="path"/> (memory-mapped, as llama.cpp does by default); <paramref name="kvType"/> as
    /// <see cref="EngineKvCache.LlamaCpp"/>; <paramref name="batches"/>: tokens per llama_decode call and per micro-batch
    /// (null: the whole context in one, as the e2e table has always run; <see cref="DefaultBatches"/>: llama.cpp's defaults,
    /// whose compute buffers are sized for 512 tokens rather than the context).
    /// </summary>
    public LlamaCppEngine(string path, int threads, int context, string kvType = "auto", (int Batch, int MicroBatch)? batches = null)
    {
        ConfigureLogging();
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)context, BatchSize = (uint)(batches?.Batch ?? context), UBatchSize = (uint)(batches?.MicroBatch ?? context),
            GpuLayerCount = 0, Threads = threads, BatchThreads = threads,
        };
        (GGMLType? type, bool? flash) = EngineKvCache.LlamaCpp(kvType);
        if (type is GGMLType t) (parameters.TypeK, parameters.TypeV) = (t, t);
        if (flash is bool f) parameters.FlashAttention = f;
        _batch = batches?.Batch ?? context;
        _weights = LLamaWeights.LoadFromFile(parameters);
        _context = _weights.CreateContext(parameters);
    }

    /// <summary>Routes llama.cpp's log to errors only, on stderr; call before anything loads libllama (later calls do nothing).</summary>
    public static void ConfigureLogging()
    {
        lock (LogLock)
        {
            if (s_logConfigured) return;
            NativeLibraryConfig.All.WithLogCallback((level, message) => { if (level == LLamaLogLevel.Error) Console.Error.Write("llama.cpp: " + message); });
            s_logConfigured = true;
        }
    }

    private float[] Run(ReadOnlySpan<int> tokens, int start, bool allLogits, out int lastIndex)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], start + i, LLamaSeqId.Zero, allLogits || i == tokens.Length - 1);
        DecodeResult result = _context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
        lastIndex = batch.TokenCount - 1;
        return _context.NativeHandle.GetLogitsIth(lastIndex).ToArray();
    }

    /// <inheritdoc />
    public float Prefill(int[] tokens)
    {
        _context.NativeHandle.MemoryClear(true);
        float[] logits = [];
        for (int fed = 0; fed < tokens.Length; fed += _batch) logits = Run(tokens.AsSpan(fed, Math.Min(_batch, tokens.Length - fed)), fed, false, out _);
        return logits[0];
    }

    /// <inheritdoc />
    public TimeSpan Decode(int first, int steps)
    {
        _context.NativeHandle.MemoryClear(true);
        float[] logits = Run([first], 0, false, out _);
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++) logits = Run([Core.Generation.TokenSampler.ArgMax(logits)], 1 + i, false, out _);
        return Stopwatch.GetElapsedTime(start);
    }

    /// <inheritdoc />
    public int[] GreedyTokens(int first, int steps)
    {
        _context.NativeHandle.MemoryClear(true);
        float[] logits = Run([first], 0, false, out _);
        var chosen = new int[steps];
        for (int i = 0; i < steps; i++) logits = Run([chosen[i] = Core.Generation.TokenSampler.ArgMax(logits)], 1 + i, false, out _);
        return chosen;
    }

    /// <inheritdoc />
    public float[][] AllLogits(int[] tokens)
    {
        _context.NativeHandle.MemoryClear(true);
        Run(tokens, 0, true, out _);
        return Enumerable.Range(0, tokens.Length).Select(i => _context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyList<TimeSpan> DecodeAtDepths(int[] tokens, IReadOnlyList<int> depths, int steps, int chunk)
    {
        _context.NativeHandle.MemoryClear(true);
        var times = new List<TimeSpan>();
        float[] logits = [];
        int fed = 0;
        foreach (int depth in depths)
        {
            for (int n; fed < depth; fed += n)
            {
                n = Math.Min(Math.Min(chunk, _batch), depth - fed);
                logits = Run(tokens.AsSpan(fed, n), fed, false, out _);
            }
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < steps; i++) logits = Run([Core.Generation.TokenSampler.ArgMax(logits)], fed + i, false, out _);
            times.Add(Stopwatch.GetElapsedTime(start));
            fed += steps;
        }
        return times;
    }

    /// <inheritdoc />
    public double KvCacheBytes => double.NaN;

    /// <inheritdoc />
    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
