using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Diagnostics;
using AgileQuant.Intrinsics.Formats;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// Integer kernels (activations quantized per token inside the call) next to the FP32 kernel (baseline, so the
/// Ratio column is the speed-up) on the LLaMA-7B layer shapes 4096×4096, 11008×4096 and 4096×11008 (OUT×IN), at
/// 1 token (GEMV: weights cycled through copies totalling ≥ 512 MB so they stream from DRAM) and 128 / 512 tokens
/// (GEMM), 1 and 2 threads. Columns: GB/s of weight bytes read and GOPS (2 ops per multiply-add). Quote them next to
/// <see cref="MachineLimitBenchmarks"/> of the same run. W4 is asymmetric groups of 32 (the CLI's format).
/// </summary>
[Config(typeof(LayerThroughputConfig))]
public class QuantizedMatMulBenchmarks
{
    private IWeightMatrix[] _fp32 = null!, _w8 = null!, _w4 = null!;
    private float[] _x = null!, _y = null!;
    private KernelSet _kernels = null!;
    private int _next;

    /// <summary>OUTxIN.</summary>
    [Params("4096x4096", "11008x4096", "4096x11008")]
    public string Shape { get; set; } = "4096x4096";

    /// <summary>Tokens per call: 1 (GEMV, decode) or 128 / 512 (GEMM, prefill).</summary>
    [Params(1, 128, 512)]
    public int Tokens { get; set; }

    /// <summary>Threads per multiplication (calling thread included).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (int rows, int cols) = LayerShape.Parse(Shape);
        var random = new Random(7);
        _fp32 = Copies(Tokens, 4L * rows * cols, () => Fp32(random, rows, cols));
        _w8 = Copies(Tokens, (long)rows * cols, () => W8(random, rows, cols));
        _w4 = Copies(Tokens, (long)rows * cols / 2, () => W4(random, rows, cols));
        _x = Fp32MatMulBenchmarks.Values(random, Tokens * cols);
        _y = new float[Tokens * rows];
        _kernels = KernelSelector.Create(new KernelOptions { Threads = Threads });
        foreach (IWeightMatrix w in _fp32.Concat(_w8).Concat(_w4)) _kernels.Prepare(w); // repacked as at model load, not in a measured call
        Console.WriteLine($"// kernels: {string.Join(", ", _kernels.Kernels.Select(k => k.Name))}; threads {Threads}; copies {_w4.Length}");
    }

    [Benchmark(Baseline = true)]
    public void Fp32() => _kernels.MatMul(Next(_fp32), _x, _y, Tokens);

    [Benchmark]
    public void W8A8() => _kernels.MatMul(Next(_w8), _x, _y, Tokens);

    [Benchmark]
    public void W4A8() => _kernels.MatMul(Next(_w4), _x, _y, Tokens);

    /// <summary>Weight bytes one call of <paramref name="method"/> streams for <paramref name="shape"/>.</summary>
    internal static double WeightBytes(string method, string shape)
    {
        (int rows, int cols) = LayerShape.Parse(shape);
        return method switch
        {
            nameof(Fp32) => 4.0 * rows * cols,
            nameof(W8A8) => 1.0 * rows * cols + 4.0 * rows,
            _ => 0.5 * rows * cols + 5.0 * rows * ((cols + 31) / 32),
        };
    }

    // GEMV cycles through copies so that each call reads its weights from DRAM, not from the caches.
    private IWeightMatrix Next(IWeightMatrix[] copies) => copies[_next++ % copies.Length];

    private static IWeightMatrix[] Copies(int tokens, long bytes, Func<IWeightMatrix> make) =>
        Enumerable.Range(0, tokens == 1 ? (int)Math.Clamp(512L * 1024 * 1024 / bytes + 1, 1, 32) : 1).Select(_ => make()).ToArray();

    private static Fp32Matrix Fp32(Random random, int rows, int cols)
    {
        var fp32 = new Fp32Matrix(Fp32MatMulBenchmarks.Values(random, rows * cols), rows, cols);
        fp32.Prepack();
        return fp32;
    }

    private static Int8RowMatrix W8(Random random, int rows, int cols)
    {
        var codes = new sbyte[rows * cols];
        random.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(codes.AsSpan()));
        return new Int8RowMatrix(codes, Fp32MatMulBenchmarks.Values(random, rows), rows, cols);
    }

    internal static PackedInt4Matrix W4(Random random, int rows, int cols)
    {
        int groups = (cols + 31) / 32;
        var codes = new byte[rows * cols];
        random.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) codes[i] &= 0x0F;
        var zeros = new byte[rows * groups];
        for (int i = 0; i < zeros.Length; i++) zeros[i] = (byte)random.Next(16);
        return PackedInt4Matrix.FromAsymmetricCodes(codes, Fp32MatMulBenchmarks.Values(random, rows * groups), zeros, rows, cols, 32);
    }
}

/// <summary>
/// The machine's limits, measured by the same run as the kernels so their ratios can be quoted: read bandwidth
/// (sum over a 1 GiB array, on ordinary and on huge pages; reported as GB/s), the int8 multiply-add peak (register-resident
/// <c>vpmaddubsw</c>+<c>vpmaddwd</c>+<c>vpaddd</c> chains), the int16 one (<c>vpmaddwd</c>+<c>vpaddd</c>; both GOPS) and the
/// FP32 FMA peak (GFLOPS), 1 and 2 threads.
/// </summary>
public class MachineLimitBenchmarks
{
    /// <summary>Threads sharing the work.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>One pass = one 1 GiB sum; the result is GB/s.</summary>
    [Benchmark]
    public double ReadBandwidthGBps() => MachineLimits.ReadBandwidthGBps(Threads, passes: 1);

    /// <summary>One pass = one 1 GiB sum over an array on transparent huge pages where Linux allows (as the weight copies are); GB/s.</summary>
    [Benchmark]
    public double HugePageReadBandwidthGBps() => MachineLimits.HugePageReadBandwidthGBps(Threads, passes: 1);

    /// <summary>One pass of the int8 chains; the result is GOPS.</summary>
    [Benchmark]
    public double Int8PeakGops() => MachineLimits.Int8PeakGops(Threads, passes: 1);

    /// <summary>One pass of the int16 (<c>vpmaddwd</c> + <c>vpaddd</c>) chains, the W8 int16 route's ceiling; the result is GOPS.</summary>
    [Benchmark]
    public double Int16MultiplyAddPeakGops() => MachineLimits.Int16MultiplyAddPeakGops(Threads, passes: 1);

    /// <summary>One pass of the FP32 FMA chains; the result is GFLOPS.</summary>
    [Benchmark]
    public double FmaPeakGflops() => MachineLimits.FmaPeakGflops(Threads, passes: 1);
}

/// <summary>Parses OUTxIN shapes.</summary>
internal static class LayerShape
{
    public static (int Rows, int Cols) Parse(string shape)
    {
        string[] parts = shape.Split('x');
        return (int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>GB/s of weights and GOPS columns computed from each case's Shape and Tokens parameters.</summary>
public sealed class LayerThroughputColumn(bool gops) : IColumn
{
    public string Id => nameof(LayerThroughputColumn) + (gops ? "Gops" : "GBps");
    public string ColumnName => gops ? "GOPS" : "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => gops ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => gops ? "Median GOPS (GFLOPS for Fp32): 2 ops per multiply-add" : "Median GB/s of weight bytes read";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? medianNs = summary[benchmarkCase]?.ResultStatistics?.Median;
        if (benchmarkCase.Parameters["Shape"] is not string shape || benchmarkCase.Parameters["Tokens"] is not int tokens || medianNs is null or <= 0) return "-";
        (int rows, int cols) = LayerShape.Parse(shape);
        double amount = gops ? 2.0 * rows * cols * tokens : QuantizedMatMulBenchmarks.WeightBytes(benchmarkCase.Descriptor.WorkloadMethod.Name, shape);
        return $"{amount / medianNs.Value:F1}";
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
}

/// <summary>Memory diagnoser, one table block per shape / tokens / threads, GB/s and GOPS columns.</summary>
public sealed class LayerThroughputConfig : ManualConfig
{
    public LayerThroughputConfig()
    {
        AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
        AddColumn(new LayerThroughputColumn(gops: false), new LayerThroughputColumn(gops: true));
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByParams);
    }
}
