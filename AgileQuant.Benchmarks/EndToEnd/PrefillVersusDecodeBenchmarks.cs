using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// A 256-token prompt on a stories110M-shaped FP32 model: prefill as one matrix pass versus feeding the
/// same tokens one at a time (decode). Both process 256 tokens, so the Ratio column is the per-token
/// speed-up of prefill (issue target: ≥ 5×).
/// </summary>
[MemoryDiagnoser]
public class PrefillVersusDecodeBenchmarks
{
    private const int PromptTokens = 256;
    private InferenceContext _context = null!;
    private int[] _prompt = null!;

    /// <summary>Threads per matrix multiplication.</summary>
    [Params(2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var model = new TransformerModel(SyntheticLlama.Create(SyntheticLlama.Stories110M), KernelSelector.Create(new KernelOptions { Threads = Threads }));
        _context = model.CreateContext();
        var random = new Random(7);
        _prompt = Enumerable.Range(0, PromptTokens).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray();
        _prompt[0] = 1;
    }

    [Benchmark(Baseline = true, Description = "decode 256 tokens one by one")]
    public float TokenByToken()
    {
        _context.Reset();
        float[] logits = [];
        for (int i = 0; i < _prompt.Length; i++) logits = _context.Forward(_prompt.AsSpan(i, 1));
        return logits[0];
    }

    [Benchmark(Description = "prefill 256 tokens")]
    public float Prefill()
    {
        _context.Reset();
        return _context.Forward(_prompt)[0];
    }
}
