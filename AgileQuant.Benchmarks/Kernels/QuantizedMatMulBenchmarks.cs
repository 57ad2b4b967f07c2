using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// Integer kernels (activations quantized per token inside the call) next to the FP32 kernel on the same
/// shapes: GEMM 4096×4096 × 128 tokens (GOPS; int8 peak ~194 / ~372 at 1 / 2 threads) and GEMV of a
/// 4096×11008 weight (GB/s of weight bytes read; bandwidth ~19 / ~27 GB/s). W4 uses groups of 32, symmetric.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class QuantizedMatMulBenchmarks
{
    private const int GemmSize = 4096, GemmTokens = 128;
    private const int GemvRows = 4096, GemvCols = 11008;
    private const double GemmOps = 2.0 * GemmSize * GemmSize * GemmTokens;

    private IWeightMatrix _gemmFp32 = null!, _gemmW8 = null!, _gemmW4 = null!, _gemvFp32 = null!, _gemvW8 = null!, _gemvW4 = null!;
    private float[] _gemmX = null!, _gemmY = null!, _gemvX = null!, _gemvY = null!;
    private KernelSet _kernels = null!;

    /// <summary>Threads per multiplication (calling thread included).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(7);
        (_gemmFp32, _gemmW8, _gemmW4) = Matrices(random, GemmSize, GemmSize);
        (_gemvFp32, _gemvW8, _gemvW4) = Matrices(random, GemvRows, GemvCols);
        _gemmX = Values(random, GemmTokens * GemmSize);
        _gemmY = new float[GemmTokens * GemmSize];
        _gemvX = Values(random, GemvCols);
        _gemvY = new float[GemvRows];
        _kernels = KernelSelector.Create(new KernelOptions { Threads = Threads });
        Console.WriteLine($"// kernels: {string.Join(", ", _kernels.Kernels.Select(k => k.Name))}; threads {Threads}");
    }

    [Benchmark(Baseline = true), BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GFLOPS", GemmOps)]
    public void GemmFp32() => _kernels.MatMul(_gemmFp32, _gemmX, _gemmY, GemmTokens);

    [Benchmark, BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GOPS", GemmOps)]
    public void GemmW8A8() => _kernels.MatMul(_gemmW8, _gemmX, _gemmY, GemmTokens);

    [Benchmark, BenchmarkCategory("GEMM 4096x4096 x128")]
    [Throughput("GOPS", GemmOps)]
    public void GemmW4A8() => _kernels.MatMul(_gemmW4, _gemmX, _gemmY, GemmTokens);

    [Benchmark(Baseline = true), BenchmarkCategory("GEMV 4096x11008")]
    [Throughput("GB/s", 4.0 * GemvRows * GemvCols)]
    public void GemvFp32() => _kernels.MatMul(_gemvFp32, _gemvX, _gemvY, 1);

    [Benchmark, BenchmarkCategory("GEMV 4096x11008")]
    [Throughput("GB/s", 1.0 * GemvRows * GemvCols + 4.0 * GemvRows)]
    public void GemvW8A8() => _kernels.MatMul(_gemvW8, _gemvX, _gemvY, 1);

    [Benchmark, BenchmarkCategory("GEMV 4096x11008")]
    [Throughput("GB/s", 0.5 * GemvRows * GemvCols + 4.0 * GemvRows * (GemvCols / 32))]
    public void GemvW4A8() => _kernels.MatMul(_gemvW4, _gemvX, _gemvY, 1);

    private static (IWeightMatrix Fp32, IWeightMatrix W8, IWeightMatrix W4) Matrices(Random random, int rows, int cols)
    {
        var fp32 = new Fp32Matrix(Values(random, rows * cols), rows, cols);
        fp32.Prepack();
        var codes8 = new sbyte[rows * cols];
        random.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(codes8.AsSpan()));
        var codes4 = new sbyte[rows * cols];
        for (int i = 0; i < codes4.Length; i++) codes4[i] = (sbyte)random.Next(-8, 8);
        var w8 = new Int8RowMatrix(codes8, Values(random, rows), rows, cols);
        var w4 = PackedInt4Matrix.FromSymmetricCodes(codes4, Values(random, rows * ((cols + 31) / 32)), rows, cols, 32);
        return (fp32, w8, w4);
    }

    private static float[] Values(Random random, int count) => Fp32MatMulBenchmarks.Values(random, count);
}
