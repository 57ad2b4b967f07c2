using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// A 512-token prefill on a stories110M-shaped model (random weights) versus the token-pruning ratio β, pruned
/// progressively from the middle layer (6 of 12) so that 1−β of the tokens reach the last layer, in FP32 and
/// W4A8 (RTN, dynamic per-token activation scales through the integer kernels) and W4A8-TRIP (RTN weights; static
/// scales calibrated on two random 64-token prompts; the fused TRIP pass). Issue targets: keeping 50% from the middle layer ⇒ ≥ 1.3× faster prefill; W4A8 + pruning ≥ 2.55×
/// the FP32 prefill.
/// </summary>
[MemoryDiagnoser]
public class PrunedPrefillBenchmarks
{
    private const int PromptTokens = 512;
    private InferenceContext _context = null!;
    private int[] _prompt = null!;

    /// <summary>Threads per matrix multiplication.</summary>
    [Params(2)]
    public int Threads { get; set; }

    /// <summary>Weight/activation configuration: FP32, W4A8-RTN or W4A8-TRIP.</summary>
    [Params("FP32", "W4A8-RTN", "W4A8-TRIP")]
    public string Config { get; set; } = "FP32";

    /// <summary>Fraction β of the tokens pruned by the last layer (0: no pruning).</summary>
    [Params(0.0, 0.25, 0.5)]
    public double PruneRatio { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        int layers = SyntheticLlama.Stories110M.NumLayers;
        TokenPruningSchedule? schedule = PruneRatio > 0 ? TokenPruningSchedule.Progressive(layers, layers / 2, PruneRatio) : null;
        (_context, _prompt) = CreateContext(Config, schedule, Threads);
    }

    /// <summary>The stories110M-shaped model (random weights) in <paramref name="config"/>: FP32, W4A8-RTN or W4A8-TRIP.</summary>
    internal static TransformerModel CreateModel(string config, int threads)
    {
        var fp32 = new TransformerModel(SyntheticLlama.Create(SyntheticLlama.Stories110M), KernelSelector.Create(new KernelOptions { Threads = threads }));
        return config switch
        {
            "FP32" => fp32,
            // TRIP's static scales need calibration; RTN weights keep the setup short (speed does not depend on the rounding)
            "W4A8-TRIP" => ModelQuantizer.Quantize(fp32, QuantizationConfig.Parse(config) with { Rounding = WeightRounding.RoundToNearest, ActOrder = false },
                new ModelQuantizationOptions { Calibration = [RandomPrompt(64, fp32.Config.VocabSize, 11), RandomPrompt(64, fp32.Config.VocabSize, 12)] }),
            _ => ModelQuantizer.Quantize(fp32, QuantizationConfig.Parse(config)),
        };
    }

    /// <summary>A context on the stories110M-shaped model in <paramref name="config"/> with <paramref name="schedule"/>, and a 512-token prompt.</summary>
    internal static (InferenceContext Context, int[] Prompt) CreateContext(string config, TokenPruningSchedule? schedule, int threads) =>
        CreateContext(CreateModel(config, threads), schedule);

    /// <summary>A context on <paramref name="model"/> with <paramref name="schedule"/>, and a 512-token prompt.</summary>
    internal static (InferenceContext Context, int[] Prompt) CreateContext(TransformerModel model, TokenPruningSchedule? schedule)
    {
        if (schedule is not null) model = new TransformerModel(model.Weights, model.Kernel, model.Options with { Pruning = schedule });
        return (model.CreateContext(), RandomPrompt(PromptTokens, model.Config.VocabSize, 7));
    }

    /// <summary>BOS then random ids in [3, vocab), from <paramref name="seed"/>.</summary>
    private static int[] RandomPrompt(int tokens, int vocab, int seed)
    {
        var random = new Random(seed);
        int[] prompt = Enumerable.Range(0, tokens).Select(_ => random.Next(3, vocab)).ToArray();
        prompt[0] = 1;
        return prompt;
    }

    [Benchmark(Description = "prefill 512 tokens")]
    public float Prefill()
    {
        _context.Reset();
        return _context.Forward(_prompt)[0];
    }
}

/// <summary>
/// The example shape: one pruning layer in the middle (layer 6 of 12) keeping 1−r of the tokens, so the
/// second half of the model runs on that fraction (r = 0.5 ⇒ 75% of the dense layer work ⇒ ≈ 1.33× ideal), FP32 and
/// W4A8, 2 threads. W4A8 with r = 0.5 against FP32 with r = 0 is the "W4A8 + pruning ≥ 2.55× FP32" pair
/// (2.55 ≈ 1.3 × the speed-up of dense W4A8 over FP32).
/// </summary>
[MemoryDiagnoser]
public class MiddleLayerPrunedPrefillBenchmarks
{
    private InferenceContext _context = null!;
    private int[] _prompt = null!;

    /// <summary>Weight/activation format: <c>FP32</c>, <c>W4A8-RTN</c> (per-token scales) or <c>W4A8-TRIP</c> (static scales).</summary>
    [Params("FP32", "W4A8-RTN", "W4A8-TRIP")]
    public string Config { get; set; } = "FP32";

    /// <summary>Fraction r of the tokens pruned at the middle layer (0: no pruning).</summary>
    [Params(0.0, 0.5)]
    public double PruneRatio { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        int layers = SyntheticLlama.Stories110M.NumLayers;
        double[] ratios = new double[layers];
        ratios[layers / 2] = PruneRatio;
        (_context, _prompt) = PrunedPrefillBenchmarks.CreateContext(Config, new TokenPruningSchedule(ratios), threads: 2);
    }

    [Benchmark(Description = "prefill 512 tokens")]
    public float Prefill()
    {
        _context.Reset();
        return _context.Forward(_prompt)[0];
    }
}
