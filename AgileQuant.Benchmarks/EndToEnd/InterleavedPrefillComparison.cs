using System.Diagnostics;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// <c>AgileQuant.Benchmarks interleaved-prefill [rounds]</c>: the pruned-prefill cases of <see cref="PrunedPrefillBenchmarks"/>
/// timed round-robin in one process (each round runs every case once), so load drift on a shared machine hits every
/// case alike; prints each case's median, its ratio to the dense FP32 prefill's median, and the median of its per-round
/// ratios to that round's dense FP32 prefill. The first round is a warm-up and is not counted.
/// </summary>
internal static class InterleavedPrefillComparison
{
    public static void Run(int rounds)
    {
        int layers = SyntheticLlama.Stories110M.NumLayers;
        double[] middleOnly = new double[layers];
        middleOnly[layers / 2] = 0.5;
        var cases = new List<(string Name, InferenceContext Context, int[] Prompt)>();
        var middle = ("r=0.5 at layer 6 only", new TokenPruningSchedule(middleOnly));
        var progressive = ("progressive β=0.5 from layer 6", TokenPruningSchedule.Progressive(layers, layers / 2, 0.5));
        foreach (string config in new[] { "FP32", "W4A8-RTN", "W4A8-TRIP" })
        {
            TransformerModel model = PrunedPrefillBenchmarks.CreateModel(config, threads: 2);
            (string, TokenPruningSchedule?)[] schedules = [("dense", null), middle, progressive];
            foreach ((string label, TokenPruningSchedule? schedule) in schedules)
            {
                (InferenceContext context, int[] prompt) = PrunedPrefillBenchmarks.CreateContext(model, schedule);
                cases.Add(($"{config}, {label}", context, prompt));
            }
        }
        var seconds = cases.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round <= rounds; round++) // round 0 warms up (JIT, page faults) and is not counted
            for (int c = 0; c < cases.Count; c++)
            {
                cases[c].Context.Reset();
                var clock = Stopwatch.StartNew();
                cases[c].Context.Forward(cases[c].Prompt);
                if (round > 0) seconds[c].Add(clock.Elapsed.TotalSeconds);
                Console.Error.WriteLine($"round {round}{(round == 0 ? " (warm-up)" : "")}: {cases[c].Name}: {clock.Elapsed.TotalSeconds:F2} s");
            }
        double Median(IEnumerable<double> s) { double[] sorted = s.Order().ToArray(); return sorted[sorted.Length / 2]; }
        double baseline = Median(seconds[0]);
        // The per-round ratio pairs each case with the FP32 dense run of the same round (seconds apart), so a busy
        // stretch that slows a whole round cancels; its median is the steadier figure on a shared machine.
        Console.WriteLine($"| case (512-token prefill, stories110M shape, 2 threads) | median s ({rounds} rounds) | FP32 dense / case, medians | FP32 dense / case, median of per-round ratios |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        for (int c = 0; c < cases.Count; c++)
        {
            double pairedRatio = Median(seconds[0].Zip(seconds[c], (dense, run) => dense / run));
            Console.WriteLine($"| {cases[c].Name} | {Median(seconds[c]):F2} | {baseline / Median(seconds[c]):F2}× | {pairedRatio:F2}× |");
        }
    }
}
