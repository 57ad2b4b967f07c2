using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Rotation;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// What QuaRot's online rotation costs at LLaMA-7B's down_proj (docs/accuracy.md, "Rotation"): the normalized Hadamard
/// transform of the SwiGLU product, 11008 = 172·64 values per token (H_172 ⊗ H_64), next to the W4A4 down_proj it precedes
/// (4096×11008, asymmetric 4-bit groups of 32, 4-bit activations; baseline, so Ratio is the transform's share), at 1 token
/// (decode) and 128 tokens (prefill), on one thread. The vectorized transform and its scalar twin both run.
/// </summary>
[ShortRunJob]
public class HadamardTransformBenchmarks
{
    private const int Rows = 4096, Cols = 11008;

    private PackedInt4Matrix _down = null!;
    private float[] _x = null!, _rotated = null!, _y = null!;
    private KernelSet _fourBit = null!;

    /// <summary>Tokens per call: 1 (decode) or 128 (prefill).</summary>
    [Params(1, 128)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        _down = QuantizedMatMulBenchmarks.W4(random, Rows, Cols);
        _x = Fp32MatMulBenchmarks.Values(random, Tokens * Cols);
        _rotated = new float[_x.Length];
        _y = new float[Tokens * Rows];
        _fourBit = KernelSelector.Create(new KernelOptions { Threads = 1, ActivationBits = 4 });
        _fourBit.Prepare(_down);
        Console.WriteLine($"// W4A4 kernel {_fourBit.KernelFor(_down).Name}; Hadamard path {HadamardTransform.Path}");
    }

    [Benchmark(Baseline = true)]
    public void W4A4DownProj() => _fourBit.MatMul(_down, _x, _y, Tokens);

    [Benchmark]
    public void Hadamard11008()
    {
        _x.CopyTo(_rotated, 0);
        HadamardTransform.TransformRows(_rotated, Cols);
    }

    [Benchmark]
    public void Hadamard11008Scalar()
    {
        _x.CopyTo(_rotated, 0);
        for (int t = 0; t < Tokens; t++) HadamardTransform.TransformScalar(_rotated.AsSpan(t * Cols, Cols));
    }
}
