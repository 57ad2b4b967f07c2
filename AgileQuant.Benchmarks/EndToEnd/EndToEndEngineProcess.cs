using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>What one child process measures: engine <see cref="EngineIndex"/> of <see cref="EngineConfig.All"/> on <see cref="File"/>.</summary>
/// <param name="File">The GGUF file the engine loads.</param>
/// <param name="EngineIndex">Index into <see cref="EngineConfig.All"/>.</param>
/// <param name="PruneRatio">β passed to <see cref="EngineConfig.All"/>.</param>
/// <param name="Threads">Threads of the engine.</param>
/// <param name="Context">Context length to allocate.</param>
/// <param name="PrefillLengths">Prefill lengths, in order.</param>
/// <param name="DecodeTokens">Decode steps after a 1-token prompt.</param>
/// <param name="VocabSize">Vocabulary of the model (for the seeded prompts).</param>
/// <param name="Presets">llama-quantize presets passed to <see cref="EngineConfig.All"/>.</param>
public sealed record EngineRunRequest(string File, int EngineIndex, double PruneRatio, int Threads, int Context, IReadOnlyList<int> PrefillLengths, int DecodeTokens, int VocabSize,
    IReadOnlyList<string> Presets);

/// <summary>One configuration's figures from one process.</summary>
/// <param name="LoadSeconds">Load time.</param>
/// <param name="PrefillTokensPerSecond">Prefill tokens/s per length.</param>
/// <param name="DecodeTokensPerSecond">Decode tokens/s.</param>
/// <param name="PeakRssMiB">Peak resident set of the process (VmHWM on Linux).</param>
public sealed record EngineRun(double LoadSeconds, IReadOnlyList<double> PrefillTokensPerSecond, double DecodeTokensPerSecond, double PeakRssMiB);

/// <summary>
/// Runs one end-to-end configuration in a child process (<c>AgileQuant.Benchmarks e2e-engine ...</c>), so that its
/// peak memory is its own and nothing carries over between configurations; the child prints one JSON object.
/// </summary>
public static class EndToEndEngineProcess
{
    /// <summary>Starts this program as a child with <paramref name="request"/> and returns what it measured.</summary>
    /// <exception cref="InvalidOperationException">The child failed or printed no result.</exception>
    public static EngineRun RunChild(EngineRunRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return RunChild<EngineRun>(["e2e-engine", "--file", request.File, "--engine", I(request.EngineIndex), "--prune", I(request.PruneRatio),
            "--threads", I(request.Threads), "--context", I(request.Context), "--prefill", string.Join(',', request.PrefillLengths.Select(I)),
            "--decode", I(request.DecodeTokens), "--vocab", I(request.VocabSize), "--presets", string.Join(',', request.Presets)], $"engine {request.EngineIndex} on {request.File}");
    }

    /// <summary>Starts this program as a child with <paramref name="args"/> and returns the JSON object it printed last.</summary>
    /// <exception cref="InvalidOperationException">The child failed or printed no result.</exception>
    public static T RunChild<T>(IEnumerable<string> args, string what)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown.");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, UseShellExecute = false };
        // Under `dotnet AgileQuant.Benchmarks.dll` the host is dotnet itself: pass the assembly first.
        if (Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            start.ArgumentList.Add(typeof(EndToEndEngineProcess).Assembly.Location);
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using Process child = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {host}.");
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0) throw new InvalidOperationException($"The child for {what} exited with {child.ExitCode}.");
        string json = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault()
            ?? throw new InvalidOperationException($"The child for {what} printed no result.");
        return JsonSerializer.Deserialize<T>(json, ResultJson) ?? throw new InvalidOperationException($"Unreadable result of the child for {what}: {json}");
    }

    /// <summary>The child's side: parses the arguments <see cref="RunChild"/> passes, measures, prints one JSON line.</summary>
    public static void RunInThisProcess(IReadOnlyList<string> args)
    {
        string Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? throw new ArgumentException($"e2e-engine needs {name}");
        var request = new EngineRunRequest(Arg("--file"), int.Parse(Arg("--engine"), CultureInfo.InvariantCulture), double.Parse(Arg("--prune"), CultureInfo.InvariantCulture),
            int.Parse(Arg("--threads"), CultureInfo.InvariantCulture), int.Parse(Arg("--context"), CultureInfo.InvariantCulture),
            Arg("--prefill").Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray(),
            int.Parse(Arg("--decode"), CultureInfo.InvariantCulture), int.Parse(Arg("--vocab"), CultureInfo.InvariantCulture),
            Arg("--presets").Split(',', StringSplitOptions.RemoveEmptyEntries));
        EngineConfig engine = EngineConfig.All(request.PruneRatio, request.Presets)[request.EngineIndex];
        int[][] prompts = EndToEndTable.Prompts(request.PrefillLengths, request.VocabSize);
        long start = Stopwatch.GetTimestamp();
        using IEndToEndEngine loaded = engine.Load(request.File, request.Threads, request.Context);
        double load = Stopwatch.GetElapsedTime(start).TotalSeconds;
        // Warm-up at the longest prompt: JIT, first touch of mapped pages, and each engine's scratch and KV cache sized
        // once (llama.cpp allocates its context at load; ours grows on demand), so no timed run pays a first allocation.
        loaded.Prefill(prompts.MaxBy(p => p.Length)!);
        var prefill = new List<double>();
        foreach (int[] prompt in prompts)
        {
            start = Stopwatch.GetTimestamp();
            loaded.Prefill(prompt);
            prefill.Add(prompt.Length / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        double decode = request.DecodeTokens / loaded.Decode(1, request.DecodeTokens).TotalSeconds;
        using Process self = Process.GetCurrentProcess();
        self.Refresh();
        Console.Out.WriteLine(JsonSerializer.Serialize(new EngineRun(load, prefill, decode, self.PeakWorkingSet64 / 1048576.0)));
    }

    /// <summary>How children print their result: NaN (a figure an engine does not report) allowed.</summary>
    internal static JsonSerializerOptions ResultJson { get; } = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    internal static string I(int value) => value.ToString(CultureInfo.InvariantCulture);

    internal static string I(double value) => value.ToString(CultureInfo.InvariantCulture);
}
