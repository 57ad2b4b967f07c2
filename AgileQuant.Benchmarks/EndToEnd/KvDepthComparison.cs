using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AgileQuant.Cli;
using AgileQuant.Cli.Bench;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// Settings of <c>e2e-kv</c>: AgileQuant W4A8 against llama.cpp on the same Q4_0 file, per KV cache type, with a long
/// prompt and decode at chosen depths (command line: <c>e2e-kv --shape llama7b-4l --prompt 3500 --kv-types auto,q8,q4 ...</c>).
/// </summary>
public sealed record KvDepthSettings
{
    /// <summary>Model shape (<see cref="SyntheticModelShape.Parse"/>).</summary>
    public string Shape { get; init; } = "llama7b-4l";

    /// <summary>Threads for every engine.</summary>
    public int Threads { get; init; } = 2;

    /// <summary>Repetitions, engines in rotated order; medians are reported.</summary>
    public int Repeats { get; init; } = 3;

    /// <summary>Tokens of the timed prefill (one batch into an empty context).</summary>
    public int Prompt { get; init; } = 3500;

    /// <summary>Depths (cached tokens) at which decode is timed, ascending; default: the prompt's length.</summary>
    public IReadOnlyList<int>? Depths { get; init; }

    /// <summary>Greedy decode steps timed at each depth.</summary>
    public int DecodeTokens { get; init; } = 32;

    /// <summary>Context length of both engines; default: the deepest decode, rounded up to 1024.</summary>
    public int? Context { get; init; }

    /// <summary>KV cache types compared (<see cref="EngineKvCache"/>): auto = each engine's default.</summary>
    public IReadOnlyList<string> KvTypes { get; init; } = ["auto"];

    /// <summary>Largest batch fed while filling the context up to a depth (untimed).</summary>
    public int Chunk { get; init; } = 512;

    /// <summary>Where the synthetic GGUF files are written (kept between runs).</summary>
    public string ModelDirectory { get; init; } = Path.Combine(Path.GetTempPath(), "agilequant-e2e");

    /// <summary>The markdown file whose KV section is written (docs/benchmarks.md).</summary>
    public string Output { get; init; } = Path.Combine("docs", "benchmarks.md");

    /// <summary>The decode depths in effect.</summary>
    public IReadOnlyList<int> EffectiveDepths => Depths ?? [Prompt];

    /// <summary>The context length in effect.</summary>
    public int EffectiveContext => Context ?? (Math.Max(Prompt, EffectiveDepths.Max() + EffectiveDepths.Count * DecodeTokens) + 1023) / 1024 * 1024;

    /// <summary>Parses <c>--shape s --threads n --repeats n --prompt n --depths a,b --decode n --context n --kv-types auto,q8 --chunk n --models dir --out file</c>.</summary>
    public static KvDepthSettings Parse(IReadOnlyList<string> args)
    {
        var s = new KvDepthSettings();
        int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);
        for (int i = 0; i < args.Count; i++)
        {
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            s = args[i] switch
            {
                "--shape" => s with { Shape = Next() },
                "--threads" => s with { Threads = Int(Next()) },
                "--repeats" => s with { Repeats = Int(Next()) },
                "--prompt" => s with { Prompt = Int(Next()) },
                "--depths" => s with { Depths = Next().Split(',').Select(Int).Order().ToArray() },
                "--decode" => s with { DecodeTokens = Int(Next()) },
                "--context" => s with { Context = Int(Next()) },
                "--kv-types" => s with { KvTypes = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--chunk" => s with { Chunk = Int(Next()) },
                "--models" => s with { ModelDirectory = Next() },
                "--out" => s with { Output = Next() },
                _ => throw new ArgumentException($"unknown option {args[i]}; expected --shape, --threads, --repeats, --prompt, --depths, --decode, --context, --kv-types, --chunk, --models, --out"),
            };
        }
        foreach (string type in s.KvTypes) EngineKvCache.Ours(type); // refuse an unknown type before any run
        return s;
    }
}

/// <summary>What one child measured: load, the prompt's prefill, decode at each depth, peak memory.</summary>
/// <param name="LoadSeconds">Load time.</param>
/// <param name="PrefillTokensPerSecond">Prefill of the prompt, tokens/s.</param>
/// <param name="DecodeTokensPerSecond">Decode tokens/s at each depth.</param>
/// <param name="PeakRssMiB">Peak resident set of the process.</param>
/// <param name="KvCacheMiB">Our KV cache at the deepest depth (NaN for llama.cpp, which allocates its cache for the whole context at load).</param>
public sealed record KvDepthRun(double LoadSeconds, double PrefillTokensPerSecond, IReadOnlyList<double> DecodeTokensPerSecond, double PeakRssMiB, double KvCacheMiB);

/// <summary>
/// <c>e2e-kv</c>: for each KV type, AgileQuant W4A8 and llama.cpp on the same all-Q4_0 GGUF file, each configuration and
/// repetition in its own process (peak RSS its own), alternating: prefill of a long prompt, decode at each depth, peak RSS
/// and our KV bytes; medians, ratios and the issue's bars written as the KV section of docs/benchmarks.md.
/// </summary>
public static class KvDepthComparison
{
    // how the marker lines of every shape's section start (one section per shape, so runs on several shapes coexist)
    private const string BeginPrefix = "<!-- KV cache and depth section";
    private const string EndPrefix = "<!-- end of the KV cache and depth section";

    private static readonly EngineConfig Ours = new("AgileQuant W4A8", GgmlType.Q4_0, false, "W4A8-RTN");
    private static readonly EngineConfig Theirs = new("llama.cpp Q4_0", GgmlType.Q4_0, true);

    /// <summary>Runs the comparison and writes its section; returns the section.</summary>
    public static string Run(KvDepthSettings settings, IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(settings);
        SyntheticModelShape shape = SyntheticModelShape.Parse(settings.Shape);
        Directory.CreateDirectory(settings.ModelDirectory);
        string path = Path.Combine(settings.ModelDirectory, $"{shape.Name}-{GgmlType.Q4_0}.gguf");
        if (!File.Exists(path))
        {
            EndToEndTable.Log($"writing {path}");
            SyntheticGgufModel.Write(path, shape, GgmlType.Q4_0);
        }
        var engines = settings.KvTypes.SelectMany(kv => new[] { (Engine: Ours, Kv: kv), (Engine: Theirs, Kv: kv) }).ToArray();
        var samples = engines.ToDictionary(e => e, _ => new List<KvDepthRun>());
        for (int rep = 0; rep < settings.Repeats; rep++)
            for (int k = 0; k < engines.Length; k++)
            {
                var (engine, kv) = engines[(k + rep) % engines.Length];
                KvDepthRun run = EndToEndEngineProcess.RunChild<KvDepthRun>(ChildArguments(settings, path, engine.LlamaCpp, kv, shape.Config.VocabSize), $"{engine.Name} kv={kv}");
                samples[(engine, kv)].Add(run);
                EndToEndTable.Log($"{shape.Name} rep {rep + 1}/{settings.Repeats} {engine.Name} kv={kv}: load {run.LoadSeconds:F2} s, prefill {run.PrefillTokensPerSecond:F1} t/s, " +
                    $"decode {string.Join(" / ", run.DecodeTokensPerSecond.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))} t/s, peak RSS {run.PeakRssMiB:F0} MiB");
            }
        string section = Markdown(shape, settings, engines.Select(e => (e.Engine, e.Kv, Median(samples[e]))).ToArray(), args);
        SectionOf(shape.Name).WriteInto(settings.Output, section);
        EndToEndTable.Log($"wrote the KV section of {settings.Output}");
        return section;
    }

    private static string[] ChildArguments(KvDepthSettings s, string path, bool llamaCpp, string kv, int vocab) =>
    [
        "e2e-kv-engine", "--file", path, "--llama-cpp", llamaCpp ? "1" : "0", "--kv", kv, "--threads", EndToEndEngineProcess.I(s.Threads),
        "--context", EndToEndEngineProcess.I(s.EffectiveContext), "--prompt", EndToEndEngineProcess.I(s.Prompt),
        "--depths", string.Join(',', s.EffectiveDepths.Select(EndToEndEngineProcess.I)), "--decode", EndToEndEngineProcess.I(s.DecodeTokens),
        "--chunk", EndToEndEngineProcess.I(s.Chunk), "--vocab", EndToEndEngineProcess.I(vocab),
    ];

    /// <summary>The child's side: loads one engine, prefills the prompt (once untimed, once timed), decodes at each depth, prints one JSON line.</summary>
    public static void RunInThisProcess(IReadOnlyList<string> args)
    {
        string Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? throw new ArgumentException($"e2e-kv-engine needs {name}");
        int Int(string name) => int.Parse(Arg(name), CultureInfo.InvariantCulture);
        EngineConfig engine = Arg("--llama-cpp") == "1" ? Theirs : Ours;
        int[] depths = Arg("--depths").Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        int steps = Int("--decode"), prompt = Int("--prompt");
        int[] tokens = EndToEndTable.Prompts([Math.Max(prompt, depths.Max() + depths.Length * steps)], Int("--vocab"))[0];
        long start = Stopwatch.GetTimestamp();
        using IEndToEndEngine loaded = engine.Load(Arg("--file"), Int("--threads"), Int("--context"), Arg("--kv"), LlamaCppEngine.DefaultBatches);
        double load = Stopwatch.GetElapsedTime(start).TotalSeconds;
        loaded.Prefill(tokens[..prompt]); // JIT, first touch, scratch and KV sized once (llama.cpp allocates its cache at load)
        start = Stopwatch.GetTimestamp();
        loaded.Prefill(tokens[..prompt]);
        double prefill = prompt / Stopwatch.GetElapsedTime(start).TotalSeconds;
        double[] decode = loaded.DecodeAtDepths(tokens, depths, steps, Int("--chunk")).Select(t => steps / t.TotalSeconds).ToArray();
        double kvMiB = loaded.KvCacheBytes / 1048576.0;
        using Process self = Process.GetCurrentProcess();
        self.Refresh();
        Console.Out.WriteLine(JsonSerializer.Serialize(new KvDepthRun(load, prefill, decode, self.PeakWorkingSet64 / 1048576.0, kvMiB), EndToEndEngineProcess.ResultJson));
    }

    private static KvDepthRun Median(List<KvDepthRun> runs)
    {
        static double Of(IEnumerable<double> values)
        {
            double[] sorted = values.Order().ToArray();
            return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        }
        int depths = runs[0].DecodeTokensPerSecond.Count;
        return new KvDepthRun(Of(runs.Select(r => r.LoadSeconds)), Of(runs.Select(r => r.PrefillTokensPerSecond)),
            Enumerable.Range(0, depths).Select(d => Of(runs.Select(r => r.DecodeTokensPerSecond[d]))).ToArray(), Of(runs.Select(r => r.PeakRssMiB)), Of(runs.Select(r => r.KvCacheMiB)));
    }

    private static string Markdown(SyntheticModelShape shape, KvDepthSettings s, (EngineConfig Engine, string Kv, KvDepthRun Run)[] results, IReadOnlyList<string> args)
    {
        var md = new StringBuilder();
        string F(double x) => double.IsFinite(x) ? x.ToString(x >= 100 ? "F0" : x >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture) : "—";
        var c = shape.Config;
        md.AppendLine(SectionOf(shape.Name).Begin);
        md.AppendLine($"## KV cache types and decode at depth: {shape.Name} (dim {c.HiddenSize}, {c.NumLayers} layers, {c.NumHeads} heads / {c.NumKvHeads} kv)");
        md.AppendLine();
        md.AppendLine($"Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `dotnet run -c Release --project AgileQuant.Benchmarks -- e2e-kv {string.Join(' ', args)}`; " +
            $"{Environment.ProcessorCount} logical CPUs, load average at the end {LoadAverage()}. Both engines load the same Q4_0 file with {s.Threads} threads and a " +
            $"{s.EffectiveContext}-token context; each configuration and repetition runs in its own process, in rotated order; medians of {s.Repeats}. " +
            $"Prefill: {s.Prompt} tokens in one call (llama.cpp: in calls of up to 2048). Decode: {s.DecodeTokens} greedy steps at each depth (the context filled to it in batches of ≤ {s.Chunk}). " +
            "llama.cpp runs with its default batches (2048 tokens per call, micro-batches of 512). KV auto = each engine's default (ours: the W4A8 scheme's 8-bit codes; llama.cpp: F16, flash attention as it chooses); q8/q4 = ours " +
            "(docs/architecture.md) against llama.cpp's Q8_0/Q4_0 keys and values with flash attention. Our KV MiB: what the cache holds at the deepest depth " +
            "(it grows with the tokens; llama.cpp allocates its cache for the whole context at load).");
        md.AppendLine();
        md.Append("| KV | engine | load s | peak RSS MiB | our KV MiB | prefill t/s |");
        foreach (int d in s.EffectiveDepths) md.Append($" decode @{d} t/s |");
        md.AppendLine();
        md.AppendLine("|" + string.Concat(Enumerable.Repeat(" --- |", 6 + s.EffectiveDepths.Count)));
        foreach ((EngineConfig engine, string kv, KvDepthRun run) in results)
            md.AppendLine($"| {kv} | {engine.Name} | {F(run.LoadSeconds)} | {F(run.PeakRssMiB)} | {F(run.KvCacheMiB)} | {F(run.PrefillTokensPerSecond)} |"
                + string.Concat(run.DecodeTokensPerSecond.Select(x => $" {F(x)} |")));
        md.AppendLine();
        md.AppendLine("| the issue's bar | measured | verdict |");
        md.AppendLine("| --- | --- | --- |");
        void Bar(string what, double ratio, double needed, bool atMost = false) =>
            md.AppendLine($"| {what} {(atMost ? "≤" : "≥")} {F(needed)}× | {F(ratio)}× | {((atMost ? ratio <= needed : ratio >= needed) ? "met" : "**missed**")} |");
        foreach (string kv in s.KvTypes)
        {
            KvDepthRun ours = results.First(r => r.Kv == kv && !r.Engine.LlamaCpp).Run, theirs = results.First(r => r.Kv == kv && r.Engine.LlamaCpp).Run;
            if (kv == "auto")
            {
                Bar($"prefill {s.Prompt}, KV auto: ours / llama.cpp", ours.PrefillTokensPerSecond / theirs.PrefillTokensPerSecond, 1.5);
                Bar("peak RSS, KV auto: ours / llama.cpp", ours.PeakRssMiB / theirs.PeakRssMiB, 1.1, atMost: true);
            }
            for (int d = 0; d < s.EffectiveDepths.Count; d++)
                Bar($"decode at depth {s.EffectiveDepths[d]}, KV {kv}: ours / llama.cpp", ours.DecodeTokensPerSecond[d] / theirs.DecodeTokensPerSecond[d], 1.2);
        }
        md.AppendLine(SectionOf(shape.Name).End);
        return md.ToString();
    }

    /// <summary>Where the section of <paramref name="shape"/> sits in docs/benchmarks.md.</summary>
    internal static MarkdownSection SectionOf(string shape) =>
        new($"{BeginPrefix}, {shape}: written by `AgileQuant.Benchmarks e2e-kv` -->", $"{EndPrefix}, {shape} -->");

    /// <summary>Every shape's section, from the first to the last (kept by <see cref="EndToEndTable"/> when it rewrites the file).</summary>
    internal static MarkdownSection AllSections { get; } = new(BeginPrefix, EndPrefix);

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
