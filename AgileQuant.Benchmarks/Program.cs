using AgileQuant.Benchmarks.EndToEnd;
using BenchmarkDotNet.Running;

namespace AgileQuant.Benchmarks;

internal static class Program
{
    // `e2e-table [...]`: the AgileQuant-vs-llama.cpp table and chart (docs/benchmarks.md, .png); otherwise BenchmarkDotNet.
    private static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "e2e-table")
        {
            EndToEndTable.Run(EndToEndSettings.Parse(args[1..]));
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
