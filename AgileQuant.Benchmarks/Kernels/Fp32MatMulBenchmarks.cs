using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// FP32 matrix multiplication Y (tokens, Rows) = X (tokens, Cols) · Wᵀ with the best SIMD kernel:
/// prefill-like GEMM 4096×4096 × 128 tokens (compare with ~99 / ~188 GFLOPS FMA peak at 1 / 2 threads)
/// and decode GEMV of a 4096×11008 weight (compare with ~19 / ~27 GB/s read bandwidth). The scalar
/// baseline runs only on a small shape.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class Fp32MatMulBenchmarks
{
    private const int GemmSize = 4096, GemmTokens = 128;
    private const int GemvRows = 4096, GemvCols = 11008;
    private const int SmallSize = 512, SmallTokens = 16;

    private Fp32Matrix _gemmWeights = null!, _gemvWeights = null!, _smallWeights = null!;
    private float[] _gemmX = null!, _gemmY = null!, _gemvX = null!, _gemvY = null!, _smallX = null!, _smallY = null!;
    private IMatMulKernel _simd = null!;
    private readonly ScalarFp32Kernel _scalar = new();

    /// <summary>Threads per multiplication (calling thread included).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        _gemmWeights = new Fp32Matrix(Values(random, GemmSize * GemmSize), GemmSize, GemmSize);
        _gemvWeights = new Fp32Matrix(Values(random, GemvRows * GemvCols), GemvRows, GemvCols);
        _smallWeights = new Fp32Matrix(Values(random, SmallSize * SmallSize), SmallSize, SmallSize);
        foreach (Fp32Matrix matrix in new[] { _gemmWeights, _gemvWeights, _smallWeights }) matrix.Prepack();
        (_gemmX, _gemmY) = (Values(random, GemmTokens * GemmSize), new float[GemmTokens * GemmSize]);
        (_gemvX, _gemvY) = (Values(random, GemvCols), new float[GemvRows]);
        (_smallX, _smallY) = (Values(random, SmallTokens * SmallSize), new float[SmallTokens * SmallSize]);
        _simd = KernelSelector.Create(new KernelOptions { Threads = Threads });
        Console.WriteLine($"// kernel set: {_simd.Name}, threads {Threads}");
    }

    [Benchmark, BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GFLOPS", 2.0 * GemmSize * GemmSize * GemmTokens)]
    public void Fp32Gemm() => _simd.MatMul(_gemmWeights, _gemmX, _gemmY, GemmTokens);

    [Benchmark, BenchmarkCategory("GEMV 4096x11008")]
    [Throughput("GB/s", 4.0 * GemvRows * GemvCols)]
    public void Fp32Gemv() => _simd.MatMul(_gemvWeights, _gemvX, _gemvY, 1);

    [Benchmark(Baseline = true), BenchmarkCategory("small 512x512 x16")]
    [Throughput("GFLOPS", 2.0 * SmallSize * SmallSize * SmallTokens)]
    public void Fp32SmallScalar() => _scalar.MatMul(_smallWeights, _smallX, _smallY, SmallTokens);

    [Benchmark, BenchmarkCategory("small 512x512 x16")]
    [Throughput("GFLOPS", 2.0 * SmallSize * SmallSize * SmallTokens)]
    public void Fp32SmallSimd() => _simd.MatMul(_smallWeights, _smallX, _smallY, SmallTokens);

    /// <summary>Uniform values in [-1, 1) from <paramref name="random"/>.</summary>
    internal static float[] Values(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }
}
