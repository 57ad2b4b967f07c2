using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;
using AgileQuant.Intrinsics.Threading;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// FP32 matrix multiplication Y (tokens, Rows) = X (tokens, Cols) · Wᵀ with the best SIMD kernel:
/// prefill-like GEMM 4096×4096 × 128 tokens (compare with the FMA peak, <see cref="FmaPeak"/>)
/// and decode GEMV of a 4096×11008 weight (compare with the read bandwidth, <c>MachineLimitBenchmarks</c>). The scalar
/// baseline runs only on a small shape. <see cref="FmaPeak"/> measures the FMA peak in the same process
/// and on the same worker pool, so GEMM can be read as a share of it however loaded the machine is.
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
    private readonly ParallelJob<int> _peakJob = new();
    private WorkerPool? _pool;

    /// <summary>FMA-loop iterations per peak chunk (10 ymm FMAs = 160 flops each) and chunks per invocation.</summary>
    private const int PeakIterations = 200_000, PeakChunks = 16;

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
        _pool = Threads > 1 ? WorkerPool.Shared(Threads) : null;
        Console.WriteLine($"// kernel set: {_simd.Name}, threads {Threads}");
    }

    [Benchmark, BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GFLOPS", 2.0 * GemmSize * GemmSize * GemmTokens)]
    public void Fp32Gemm() => _simd.MatMul(_gemmWeights, _gemmX, _gemmY, GemmTokens);

    /// <summary>Register-resident FMA chains on the kernels' worker pool: this machine's FP32 peak, now.</summary>
    [Benchmark, BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GFLOPS", 160.0 * PeakIterations * PeakChunks)]
    public unsafe void FmaPeak() => _peakJob.Execute(_pool, 0, &PeakChunk, PeakChunks);

    // 10 independent chains c_i = a · b + c_i (8 floats each), PeakIterations times: 2 FMA pipes × 4-cycle latency need ≥ 8
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PeakChunk(in int unused, int chunk, int chunkCount)
    {
        int iterations = PeakIterations * PeakChunks / chunkCount; // one thread alone runs the job as a single chunk
        Vector256<float> a = Vector256.Create(1.0001f), b = Vector256.Create(0.9999f);
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default;
        Vector256<float> c5 = default, c6 = default, c7 = default, c8 = default, c9 = default;
        for (int i = 0; i < iterations; i++)
        {
            c0 = Vector256.FusedMultiplyAdd(a, b, c0); c1 = Vector256.FusedMultiplyAdd(a, b, c1);
            c2 = Vector256.FusedMultiplyAdd(a, b, c2); c3 = Vector256.FusedMultiplyAdd(a, b, c3);
            c4 = Vector256.FusedMultiplyAdd(a, b, c4); c5 = Vector256.FusedMultiplyAdd(a, b, c5);
            c6 = Vector256.FusedMultiplyAdd(a, b, c6); c7 = Vector256.FusedMultiplyAdd(a, b, c7);
            c8 = Vector256.FusedMultiplyAdd(a, b, c8); c9 = Vector256.FusedMultiplyAdd(a, b, c9);
        }
        PeakSink = ((c0 + c1) + (c2 + c3) + (c4 + c5) + (c6 + c7) + (c8 + c9)).GetElement(0);
    }

    /// <summary>Keeps the peak loop's result observable so the JIT cannot drop it.</summary>
    private static float PeakSink;

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
