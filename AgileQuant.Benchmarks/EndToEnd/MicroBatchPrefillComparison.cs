using System.Diagnostics;
using System.Globalization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// <c>prefill-microbatch</c>: one model, one process, a long prompt prefilled into an empty context alternately in one pass
/// through the layers and in micro-batches (<see cref="InferenceContext"/>'s default, or <c>--micro-batch N</c>), round by
/// round; prints each side's median tokens/s and their ratio, and checks that both give the same last logits bit for bit.
/// Issue 27: micro-batches bound the prefill's scratch; this shows what they cost or gain in speed on the same machine at
/// the same moment (docs/benchmarks.md, "KV cache types and decode at depth").
/// </summary>
internal static class MicroBatchPrefillComparison
{
    /// <summary>Runs with <c>--file F [--scheme W4A8-RTN] [--kv auto] [--threads 2] [--prompt 3500] [--context 4096] [--rounds 5] [--micro-batch 512] [--vocab 32000]</c>.</summary>
    public static void Run(string[] args)
    {
        string Arg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
        int Int(string name, int fallback) => int.Parse(Arg(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        string file = Arg("--file", "") is { Length: > 0 } f ? f : throw new ArgumentException("prefill-microbatch needs --file");
        int threads = Int("--threads", 2), prompt = Int("--prompt", 3500), rounds = Int("--rounds", 5), microBatch = Int("--micro-batch", InferenceContext.DefaultMicroBatchTokens);
        var engine = new AgileQuantEngine(file, threads, Arg("--scheme", "W4A8-RTN"), 0, Arg("--kv", "auto"), Int("--context", 4096));
        TransformerModel model = engine.Model;
        int[] tokens = EndToEndTable.Prompts([prompt], Int("--vocab", model.Config.VocabSize))[0];
        InferenceContext whole = model.CreateContext(), split = model.CreateContext();
        whole.MicroBatchTokens = int.MaxValue;
        split.MicroBatchTokens = microBatch;
        var times = new[] { new List<double>(), new List<double>() };
        float[][] last = [[], []];
        for (int round = -1; round < rounds; round++) // round −1: JIT, first touch, scratch and cache sized
            for (int side = 0; side < 2; side++)
            {
                InferenceContext context = (round + side) % 2 == 0 ? whole : split; // the order alternates between rounds
                int which = context == whole ? 0 : 1;
                context.Reset();
                long start = Stopwatch.GetTimestamp();
                last[which] = context.Forward(tokens);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (round >= 0) times[which].Add(prompt / seconds);
                Console.Error.WriteLine($"round {round + 1}/{rounds} {(which == 0 ? "one pass" : $"micro-batches of ≤ {microBatch}")}: {prompt / seconds:F1} t/s");
            }
        static double Median(List<double> x)
        {
            double[] s = x.Order().ToArray();
            return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        }
        bool same = last[0].AsSpan().SequenceEqual(last[1]);
        string load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
        Console.Out.WriteLine(FormattableString.Invariant(
            $"prefill {prompt} tokens, {threads} threads, medians of {rounds}: one pass {Median(times[0]):F1} t/s, micro-batches of ≤ {microBatch} {Median(times[1]):F1} t/s, ratio {Median(times[1]) / Median(times[0]):F3}; last logits bit for bit equal: {same}; load average {load}"));
    }
}
