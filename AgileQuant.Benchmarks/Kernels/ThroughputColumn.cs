using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>Work one benchmark invocation does: multiply-adds for GEMM (GOPS) or weight bytes for GEMV (GB/s).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ThroughputAttribute(string unit, double amount) : Attribute
{
    /// <summary>"GFLOPS", "GOPS" or "GB/s".</summary>
    public string Unit { get; } = unit;

    /// <summary>Operations (2 per multiply-add) or bytes per invocation.</summary>
    public double Amount { get; } = amount;
}

/// <summary>A summary column: median throughput, from each method's <see cref="ThroughputAttribute"/>.</summary>
public sealed class ThroughputColumn : IColumn
{
    public string Id => nameof(ThroughputColumn);
    public string ColumnName => "Throughput";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Median work per second: GFLOPS/GOPS (2 ops per multiply-add) or GB/s of weights read";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var throughput = (ThroughputAttribute?)Attribute.GetCustomAttribute(benchmarkCase.Descriptor.WorkloadMethod, typeof(ThroughputAttribute));
        double? medianNs = summary[benchmarkCase]?.ResultStatistics?.Median;
        if (throughput is null || medianNs is null or <= 0) return "-";
        return $"{throughput.Amount / medianNs.Value:F1} {throughput.Unit}";
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
}

/// <summary>Kernel benchmark config: memory diagnoser, one table block (and baseline) per category, throughput column.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddDiagnoser(MemoryDiagnoser.Default);
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);
        AddColumn(CategoriesColumn.Default, new ThroughputColumn());
    }
}
