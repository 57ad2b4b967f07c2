using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace AgileQuant.Tests.Fuzz;

/// <summary>Settings of one fuzz run.</summary>
/// <param name="Iterations">Mutated inputs to try (the seeds themselves are tried first, in addition).</param>
/// <param name="BaseSeed">Input i is built from <c>new Random(BaseSeed + i)</c>, so any input can be rebuilt alone.</param>
/// <param name="PerInputLimit">An input running longer is a failure (hang detector, checked by a watchdog).</param>
/// <param name="StackProbability">Chance of each further stacked mutation (at most <see cref="MaxStack"/> in all).</param>
/// <param name="MaxStack">Most mutations applied to one input.</param>
/// <param name="MaxFailures">The run stops after this many failures.</param>
public sealed record FuzzOptions(int Iterations, int BaseSeed, TimeSpan PerInputLimit,
    double StackProbability = 0.3, int MaxStack = 4, int MaxFailures = 10);

/// <summary>An input that ended in an unexpected exception or ran past the limit.</summary>
/// <param name="Index">Input index (-1 - k for seed k).</param>
/// <param name="Reason">The exception or the timeout.</param>
/// <param name="Input">The input bytes.</param>
public sealed record FuzzFailure(int Index, string Reason, byte[] Input);

/// <summary>Outcome of a fuzz run.</summary>
public sealed class FuzzReport
{
    /// <summary>Inputs run to completion.</summary>
    public int InputsTried { get; internal set; }

    /// <summary>Inputs the target accepted without an exception.</summary>
    public int Accepted { get; internal set; }

    /// <summary>Inputs refused with an expected exception.</summary>
    public int Rejected { get; internal set; }

    /// <summary>Distinct exact messages of expected exceptions.</summary>
    public int DistinctMessages => Messages.Count;

    /// <summary>Exact messages of expected exceptions.</summary>
    public HashSet<string> Messages { get; } = new(StringComparer.Ordinal);

    /// <summary>Message kinds (numbers and quoted names masked) and how often each was seen.</summary>
    public Dictionary<string, int> MessageKinds { get; } = new(StringComparer.Ordinal);

    /// <summary>Longest time one input took.</summary>
    public TimeSpan MaxInputTime { get; internal set; }

    /// <summary>Index of the slowest input.</summary>
    public int SlowestInput { get; internal set; }

    /// <summary>Total time spent building inputs (mutating).</summary>
    public TimeSpan MutationTime { get; internal set; }

    /// <summary>Total time spent in the target.</summary>
    public TimeSpan TargetTime { get; internal set; }

    /// <summary>Wall time of the whole run.</summary>
    public TimeSpan Elapsed { get; internal set; }

    /// <summary>Unexpected exceptions and timeouts.</summary>
    public List<FuzzFailure> Failures { get; } = [];

    /// <summary>A multi-line summary listing the <paramref name="topKinds"/> most frequent message kinds.</summary>
    public string Describe(int topKinds = 20)
    {
        var text = new StringBuilder();
        text.AppendLine($"inputs tried {InputsTried} in {Elapsed.TotalSeconds:F1} s ({InputsTried / Math.Max(Elapsed.TotalSeconds, 1e-9):F0}/s): " +
            $"accepted {Accepted}, rejected {Rejected}, failures {Failures.Count}");
        text.AppendLine($"distinct messages {DistinctMessages}, message kinds {MessageKinds.Count}; " +
            $"max time per input {MaxInputTime.TotalMilliseconds:F1} ms (input {SlowestInput}); " +
            $"time in target {TargetTime.TotalSeconds:F1} s, in mutators {MutationTime.TotalSeconds:F1} s");
        foreach (var (kind, count) in MessageKinds.OrderByDescending(p => p.Value).Take(topKinds))
            text.AppendLine($"  {count,7}  {(kind.Length > 160 ? kind[..160] + "..." : kind)}");
        foreach (FuzzFailure failure in Failures)
            text.AppendLine($"FAILURE input {failure.Index} ({failure.Input.Length} bytes): {failure.Reason}");
        return text.ToString();
    }
}

/// <summary>
/// Runs a target over seeds and mutated seeds. Every input must end in success or in an exception that
/// <c>isExpected</c> accepts; anything else, or an input running past the per-input limit, is a failure.
/// The target runs on a worker thread watched by the calling thread, so a hang is reported, not waited on.
/// </summary>
public static class FuzzRunner
{
    /// <summary>Builds input <paramref name="index"/> exactly as <see cref="Run"/> does (to reproduce a failure).</summary>
    public static byte[] MakeInput(IReadOnlyList<byte[]> seeds, IReadOnlyList<IFuzzMutator> mutators, FuzzOptions options, int index)
    {
        ArgumentOutOfRangeException.ThrowIfZero(seeds.Count);
        ArgumentOutOfRangeException.ThrowIfZero(mutators.Count);
        var random = new Random(unchecked(options.BaseSeed + index));
        byte[] input = seeds[random.Next(seeds.Count)];
        int steps = 1;
        while (steps < options.MaxStack && random.NextDouble() < options.StackProbability) steps++;
        for (int i = 0; i < steps; i++) input = mutators[random.Next(mutators.Count)].Mutate(input, random);
        return input;
    }

    /// <summary>Adapts a reader that takes a path: each input is written to <paramref name="path"/> first.</summary>
    public static Action<byte[]> ThroughFile(string path, Action<string> target) => input =>
    {
        File.WriteAllBytes(path, input);
        target(path);
    };

    /// <summary>Runs the seeds, then <see cref="FuzzOptions.Iterations"/> mutated inputs, through <paramref name="target"/>.</summary>
    public static FuzzReport Run(IReadOnlyList<byte[]> seeds, IReadOnlyList<IFuzzMutator> mutators,
        Action<byte[]> target, Func<Exception, bool> isExpected, FuzzOptions options, Func<string, string>? maskMessage = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(isExpected);
        var report = new FuzzReport();
        var clock = Stopwatch.StartNew();
        long currentStart = 0; // Stopwatch ticks of the running input's start, 0 when idle
        int currentIndex = 0;
        byte[] currentInput = [];
        var stop = false;

        void RunOne(int index, byte[] input)
        {
            Volatile.Write(ref currentInput, input);
            Volatile.Write(ref currentIndex, index);
            long start = Stopwatch.GetTimestamp();
            Volatile.Write(ref currentStart, start);
            try
            {
                target(input);
                report.Accepted++;
            }
            catch (Exception e) when (isExpected(e))
            {
                report.Rejected++;
                if (report.Messages.Add(e.Message))
                {
                    string kind = (maskMessage ?? MaskMessage)(e.Message);
                    report.MessageKinds[kind] = report.MessageKinds.GetValueOrDefault(kind) + 1;
                }
                else report.MessageKinds[(maskMessage ?? MaskMessage)(e.Message)]++;
            }
            catch (Exception e)
            {
                lock (report.Failures) report.Failures.Add(new FuzzFailure(index, e.ToString(), input));
            }
            Volatile.Write(ref currentStart, 0);
            TimeSpan took = Stopwatch.GetElapsedTime(start);
            report.TargetTime += took;
            if (took > report.MaxInputTime)
            {
                report.MaxInputTime = took;
                report.SlowestInput = index;
            }
            report.InputsTried++;
        }

        var worker = new Thread(() =>
        {
            for (int k = 0; k < seeds.Count && !Volatile.Read(ref stop); k++) RunOne(-1 - k, seeds[k]);
            for (int i = 0; i < options.Iterations && !Volatile.Read(ref stop); i++)
            {
                byte[] input;
                long mutationStart = Stopwatch.GetTimestamp();
                try
                {
                    input = MakeInput(seeds, mutators, options, i);
                    report.MutationTime += Stopwatch.GetElapsedTime(mutationStart);
                }
                catch (Exception e)
                {
                    lock (report.Failures) report.Failures.Add(new FuzzFailure(i, "mutator failed: " + e, []));
                    break;
                }
                RunOne(i, input);
                lock (report.Failures)
                    if (report.Failures.Count >= options.MaxFailures) Volatile.Write(ref stop, true);
            }
        }, maxStackSize: 16 << 20) { IsBackground = true, Name = "fuzz worker" };
        worker.Start();
        while (!worker.Join(20))
        {
            long start = Volatile.Read(ref currentStart);
            if (start != 0 && Stopwatch.GetElapsedTime(start) > options.PerInputLimit)
            {
                Volatile.Write(ref stop, true);
                lock (report.Failures)
                    report.Failures.Add(new FuzzFailure(Volatile.Read(ref currentIndex),
                        $"still running after {options.PerInputLimit.TotalSeconds:F1} s (limit); abandoned", Volatile.Read(ref currentInput)));
                break;
            }
        }
        report.Elapsed = clock.Elapsed;
        return report;
    }

    /// <summary>Masks numbers and quoted text so messages that differ only in values count as one kind.</summary>
    public static string MaskMessage(string message) =>
        Regex.Replace(Regex.Replace(message, "'[^']*'", "'…'"), "[0-9]+", "#");
}
