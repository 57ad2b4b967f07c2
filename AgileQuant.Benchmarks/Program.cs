using BenchmarkDotNet.Running;

namespace AgileQuant.Benchmarks;

internal static class Program
{
    private static void Main(string[] args)
    {
        if (args is ["interleaved-prefill", ..])
        {
            EndToEnd.InterleavedPrefillComparison.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 3);
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
