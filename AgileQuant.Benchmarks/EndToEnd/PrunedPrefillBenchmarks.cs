using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// A 512-token prefill on a stories110M-shaped model (random weights) versus the token-pruning ratio β, pruned
/// progressively from the middle layer (6 of 12) so that 1−β of the tokens reach the last layer, in FP32 and
/// W4A8 (RTN). Issue targets: keeping 50% from the middle layer ⇒ ≥ 1.3× faster prefill; W4A8 + pruning ≥ 2.55×
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

    /// <summary>Weight/activation configuration: FP32 or W4A8-RTN.</summary>
    [Params("FP32", "W4A8-RTN")]
    public string Config { get; set; } = "FP32";

    /// <summary>Fraction β of the tokens pruned by the last layer (0: no pruning).</summary>
    [Params(0.0, 0.25, 0.5)]
    public double PruneRatio { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var fp32 = new TransformerModel(SyntheticLlama.Create(SyntheticLlama.Stories110M), KernelSelector.Create(new KernelOptions { Threads = Threads }));
        TransformerModel model = Config == "FP32" ? fp32 : ModelQuantizer.Quantize(fp32, QuantizationConfig.Parse(Config));
        if (PruneRatio > 0)
        {
            TokenPruningSchedule schedule = TokenPruningSchedule.Progressive(model.Config.NumLayers, model.Config.NumLayers / 2, PruneRatio);
            model = new TransformerModel(model.Weights, model.Kernel, model.Options with { Pruning = schedule });
        }
        _context = model.CreateContext();
        var random = new Random(7);
        _prompt = Enumerable.Range(0, PromptTokens).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray();
        _prompt[0] = 1;
    }

    [Benchmark(Description = "prefill 512 tokens")]
    public float Prefill()
    {
        _context.Reset();
        return _context.Forward(_prompt)[0];
    }
}
