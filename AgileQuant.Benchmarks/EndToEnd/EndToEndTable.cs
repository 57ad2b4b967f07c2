using System.Diagnostics;
using System.Globalization;
using System.Text;
using AgileQuant.Cli.Bench;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>Settings of one end-to-end table run (command line: <c>e2e-table --shape llama7b-4l --threads 2 ...</c>).</summary>
public sealed record EndToEndSettings
{
    /// <summary>Model shapes (<see cref="SyntheticModelShape.Parse"/>).</summary>
    public IReadOnlyList<string> Shapes { get; init; } = ["llama7b-4l"];

    /// <summary>Threads for every engine.</summary>
    public int Threads { get; init; } = 2;

    /// <summary>Repetitions; each loads every engine once, in rotated order (medians are reported).</summary>
    public int Repeats { get; init; } = 3;

    /// <summary>Prefill lengths measured.</summary>
    public IReadOnlyList<int> PrefillLengths { get; init; } = [128, 512];

    /// <summary>Decode steps measured after one prompt token.</summary>
    public int DecodeTokens { get; init; } = 64;

    /// <summary>Token pruning β of the pruned configuration.</summary>
    public double PruneRatio { get; init; } = 0.5;

    /// <summary>Where the synthetic GGUF files are written (kept between runs: same seed, same bytes).</summary>
    public string ModelDirectory { get; init; } = Path.Combine(Path.GetTempPath(), "agilequant-e2e");

    /// <summary>The markdown file written; the chart is written beside it with extension <c>.png</c>.</summary>
    public string Output { get; init; } = Path.Combine("docs", "benchmarks.md");

    /// <summary>
    /// llama-quantize presets (e.g. Q4_0, Q4_K_M, Q5_K_M, Q6_K, Q8_0) whose files, made by llama.cpp's quantizer from the F32
    /// file, both engines also run (<see cref="LlamaCppPresetFiles"/>); empty: only our own exports.
    /// </summary>
    public IReadOnlyList<string> Presets { get; init; } = [];

    /// <summary>Parses <c>--shape a,b --threads n --repeats n --prefill 128,512 --decode n --prune r --models dir --out file --presets p,q</c>.</summary>
    public static EndToEndSettings Parse(IReadOnlyList<string> args)
    {
        var s = new EndToEndSettings();
        for (int i = 0; i < args.Count; i++)
        {
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            s = args[i] switch
            {
                "--shape" => s with { Shapes = Next().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--threads" => s with { Threads = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--repeats" => s with { Repeats = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--prefill" => s with { PrefillLengths = Next().Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray() },
                "--decode" => s with { DecodeTokens = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--prune" => s with { PruneRatio = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--models" => s with { ModelDirectory = Next() },
                "--out" => s with { Output = Next() },
                "--presets" => s with { Presets = ParsePresets(Next()) },
                _ => throw new ArgumentException($"unknown option {args[i]}; expected --shape, --threads, --repeats, --prefill, --decode, --prune, --models, --out, --presets"),
            };
        }
        return s;
    }

    // "default" → the issue's five; names are checked against llama.cpp's file types here, before hours of measuring.
    private static string[] ParsePresets(string list)
    {
        string[] presets = list == "default" ? [.. LlamaCppPresetFiles.Default] : list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (string preset in presets) _ = LlamaCppPresetFiles.Parse(preset);
        return presets;
    }
}

/// <summary>One engine's medians on one shape.</summary>
public sealed record EngineResult(EngineConfig Engine, double LoadSeconds, double MemoryMiB, IReadOnlyList<double> PrefillTokensPerSecond, double DecodeTokensPerSecond);

/// <summary>
/// The end-to-end table: for each shape, writes the synthetic model as GGUF (F32, F16, Q8_0, Q4_0), then repeats
/// {load, prefill at each length, decode} for every engine configuration, rotating the order each repetition so that
/// machine noise spreads over all engines, and writes medians, ratios and the issue's bars as markdown plus a PNG chart.
/// </summary>
public static class EndToEndTable
{
    /// <summary>Runs the table with <paramref name="settings"/>; returns the markdown written.</summary>
    public static string Run(EndToEndSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Directory.CreateDirectory(settings.ModelDirectory);
        var sections = new List<(SyntheticModelShape Shape, IReadOnlyList<EngineResult> Results)>();
        var typeMixes = new Dictionary<(string Shape, string Preset), string>();
        foreach (string shapeName in settings.Shapes)
        {
            SyntheticModelShape shape = SyntheticModelShape.Parse(shapeName);
            var files = new Dictionary<string, string>(); // EngineConfig.FileKey → path
            foreach (GgmlType type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0 })
            {
                string path = Path.Combine(settings.ModelDirectory, $"{shape.Name}-{type}.gguf");
                if (!File.Exists(path))
                {
                    Log($"writing {path}");
                    SyntheticGgufModel.Write(path, shape, type);
                }
                files[type.ToString()] = path;
            }
            foreach (string preset in settings.Presets)
            {
                Log($"{shape.Name}: llama.cpp's quantizer, preset {preset}");
                files[preset] = LlamaCppPresetFiles.Quantize(files[nameof(GgmlType.F32)], preset, settings.Threads);
                typeMixes[(shape.Name, preset)] = LlamaCppPresetFiles.TypeMix(files[preset]);
            }
            sections.Add((shape, Measure(shape, files, settings)));
        }
        string markdown = Markdown(sections, typeMixes, settings);
        string? directory = Path.GetDirectoryName(Path.GetFullPath(settings.Output));
        if (directory is not null) Directory.CreateDirectory(directory);
        // the KV cache and depth sections (e2e-kv) stay after the regenerated table
        File.WriteAllText(settings.Output, markdown + KvDepthComparison.AllSections.Existing(settings.Output));
        EndToEndChart.Write(Path.ChangeExtension(settings.Output, ".png"), sections);
        Log($"wrote {settings.Output} and {Path.ChangeExtension(settings.Output, ".png")}");
        return markdown;
    }

    private static IReadOnlyList<EngineResult> Measure(SyntheticModelShape shape, Dictionary<string, string> files, EndToEndSettings s)
    {
        IReadOnlyList<EngineConfig> engines = EngineConfig.All(s.PruneRatio, s.Presets);
        int context = Math.Max(s.PrefillLengths.Max(), s.DecodeTokens + 1);
        var samples = engines.ToDictionary(e => e, _ => new List<EngineRun>());
        for (int rep = 0; rep < s.Repeats; rep++)
            for (int k = 0; k < engines.Count; k++)
            {
                int index = (k + rep) % engines.Count;
                EngineConfig engine = engines[index];
                // One process per configuration and repetition: its peak resident set is this configuration's alone,
                // and no engine inherits another's heap, JIT state or page cache pressure inside the process.
                EngineRun run = EndToEndEngineProcess.RunChild(new EngineRunRequest(files[engine.FileKey], index, s.PruneRatio, s.Threads, context,
                    s.PrefillLengths, s.DecodeTokens, shape.Config.VocabSize, s.Presets));
                samples[engine].Add(run);
                Log($"{shape.Name} rep {rep + 1}/{s.Repeats} {engine.Name}: load {run.LoadSeconds:F2} s, prefill {string.Join(" / ", run.PrefillTokensPerSecond.Select(x => x.ToString("F1", CultureInfo.InvariantCulture)))} t/s, decode {run.DecodeTokensPerSecond:F2} t/s, peak RSS {run.PeakRssMiB:F0} MiB");
            }
        return engines.Select(e =>
        {
            List<EngineRun> runs = samples[e];
            return new EngineResult(e, MedianOf(runs.Select(r => r.LoadSeconds)), MedianOf(runs.Select(r => r.PeakRssMiB)),
                Enumerable.Range(0, s.PrefillLengths.Count).Select(i => MedianOf(runs.Select(r => r.PrefillTokensPerSecond[i]))).ToArray(),
                MedianOf(runs.Select(r => r.DecodeTokensPerSecond)));
        }).ToArray();
    }

    /// <summary>The prompts of each prefill length: BOS then seeded random ids (the same in every process).</summary>
    internal static int[][] Prompts(IReadOnlyList<int> lengths, int vocabSize)
    {
        var random = new Random(11);
        return lengths.Select(n => Enumerable.Range(0, n).Select(i => i == 0 ? 1 : random.Next(3, vocabSize)).ToArray()).ToArray();
    }

    private static double MedianOf(IEnumerable<double> values)
    {
        double[] sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Markdown(List<(SyntheticModelShape Shape, IReadOnlyList<EngineResult> Results)> sections,
        Dictionary<(string Shape, string Preset), string> typeMixes, EndToEndSettings s)
    {
        var md = new StringBuilder();
        string F(double x) => double.IsFinite(x) ? x.ToString(x >= 100 ? "F0" : x >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture) : "—";
        md.AppendLine("# End-to-end benchmarks: AgileQuant vs llama.cpp");
        md.AppendLine();
        string presets = s.Presets.Count > 0 ? $" --presets {string.Join(',', s.Presets)}" : "";
        md.AppendLine($"Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `dotnet run -c Release --project AgileQuant.Benchmarks -- e2e-table --shape {string.Join(',', s.Shapes)} --threads {s.Threads} --repeats {s.Repeats} --prune {s.PruneRatio.ToString(CultureInfo.InvariantCulture)}{presets}`.");
        md.AppendLine($"Machine: {Environment.ProcessorCount} logical CPUs, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; load average at the end: {LoadAverage()}.");
        md.AppendLine($"Models: seeded random LLaMA weights at real shapes written as GGUF v3 (F32/F16/Q8_0/Q4_0); both engines load the same files. " +
            $"{s.Threads} threads for every engine; each repetition loads every configuration once, in rotated order; medians of {s.Repeats}. " +
            $"llama.cpp: LLamaSharp 0.30.0 + LLamaSharp.Backend.Cpu 0.30.0. Prefill: one batch of N tokens into an empty context (last-token logits), each engine reusing one context whose KV cache is cleared, after one untimed warm-up prefill of the longest prompt. " +
            $"Decode: {s.DecodeTokens} greedy tokens after a 1-token prompt. Memory: peak resident set of the process that ran the configuration (each configuration and repetition runs in its own process: runtime, weights as held, KV cache, scratch; mapped file pages count once touched).");
        md.AppendLine();
        foreach ((SyntheticModelShape shape, IReadOnlyList<EngineResult> results) in sections)
        {
            var c = shape.Config;
            md.AppendLine($"## {shape.Name}: dim {c.HiddenSize}, ffn {c.IntermediateSize}, {c.NumLayers} layers, {c.NumHeads} heads / {c.NumKvHeads} kv, vocab {c.VocabSize}");
            md.AppendLine();
            EngineResult fp32 = results.First(r => r.Engine.Name == "AgileQuant FP32");
            EngineResult q4 = results.First(r => r.Engine.Name == "llama.cpp Q4_0");
            int last = s.PrefillLengths.Count - 1;
            md.Append("| engine | file | load s | peak RSS MiB |");
            foreach (int n in s.PrefillLengths) md.Append($" prefill {n} t/s |");
            md.AppendLine($" decode t/s | prefill {s.PrefillLengths[last]} × FP32 | decode × FP32 | prefill {s.PrefillLengths[last]} × llama.cpp Q4_0 | decode × llama.cpp Q4_0 |");
            md.AppendLine("|" + string.Concat(Enumerable.Repeat(" --- |", 4 + s.PrefillLengths.Count + 5)));
            foreach (EngineResult r in results.Where(r => r.Engine.Preset is null))
            {
                md.Append($"| {r.Engine.Name} | {r.Engine.FileLabel} | {F(r.LoadSeconds)} | {F(r.MemoryMiB)} |");
                foreach (double p in r.PrefillTokensPerSecond) md.Append($" {F(p)} |");
                md.AppendLine($" {F(r.DecodeTokensPerSecond)} | {F(r.PrefillTokensPerSecond[last] / fp32.PrefillTokensPerSecond[last])}× | {F(r.DecodeTokensPerSecond / fp32.DecodeTokensPerSecond)}× | " +
                    $"{F(r.PrefillTokensPerSecond[last] / q4.PrefillTokensPerSecond[last])}× | {F(r.DecodeTokensPerSecond / q4.DecodeTokensPerSecond)}× |");
            }
            md.AppendLine();
            EngineResult w4a8 = results.First(r => r.Engine.Name == "AgileQuant W4A8");
            EngineResult pruned = results.First(r => r.Engine.PruneRatio > 0);
            // issue #7 sets its bars on the LLaMA-7B-shaped model; other shapes show the same ratios for comparison
            md.AppendLine(shape.Name.StartsWith("llama7b", StringComparison.Ordinal)
                ? "| the issue's bar | measured | verdict |"
                : "| the issue's bar (set for the LLaMA-7B shape; this shape for comparison) | measured | verdict |");
            md.AppendLine("| --- | --- | --- |");
            void Bar(string what, double ratio, double needed) =>
                md.AppendLine($"| {what} ≥ {F(needed)}× | {F(ratio)}× | {(ratio >= needed ? "met" : "**missed**")} |");
            Bar("AgileQuant W4A8 decode / llama.cpp Q4_0 decode", w4a8.DecodeTokensPerSecond / q4.DecodeTokensPerSecond, 1);
            Bar($"AgileQuant W4A8 prefill {s.PrefillLengths[last]} / llama.cpp Q4_0 prefill", w4a8.PrefillTokensPerSecond[last] / q4.PrefillTokensPerSecond[last], 1);
            Bar("AgileQuant W4A8 decode / AgileQuant FP32 decode", w4a8.DecodeTokensPerSecond / fp32.DecodeTokensPerSecond, 6);
            Bar($"AgileQuant W4A8 + pruning prefill {s.PrefillLengths[last]} / AgileQuant FP32 prefill", pruned.PrefillTokensPerSecond[last] / fp32.PrefillTokensPerSecond[last], 2.55);
            md.AppendLine();
            if (s.Presets.Count > 0) AppendPresets(md, shape, results, typeMixes, s, F);
        }
        md.AppendLine($"![prefill and decode tokens/s]({Path.GetFileName(Path.ChangeExtension(s.Output, ".png"))})");
        md.AppendLine();
        md.AppendLine("Notes: absolute figures on this shared 2-core machine move with its load (quote ratios measured in the same run). " +
            "W8A8 loads the block-wise Q8_0 file as grouped int8 (every block's scale kept, docs/kernels.md); W4A8/W4A4 load the Q4_0 file as symmetric 4-bit groups of 32 " +
            "(the same weights llama.cpp runs, LM head included). What limits each bar (machine limits in ../shared/docs/PERFORMANCE.md, kernels in docs/kernels.md): " +
            "decode streams every weight once per token, so its ceiling is weight bytes per token over the memory bandwidth — the FP32 file holds about 7.1× the bytes " +
            "of the Q4_0 file, so 6× FP32 decode needs the 4-bit path to stream at about 85% of the rate the FP32 path reaches; prefill is bound by the integer " +
            "multiply-add rate (the int8 peak is ~1.98× the fp32 FMA peak here; the 4-bit GEMM gains more because one unpack feeds many tokens). " +
            "When the load average is far above the core count every figure is depressed, and llama.cpp, whose worker threads spin-wait between operations, " +
            "suffers most. Peak RSS: AgileQuant hands each tensor's mapped file pages back once it is converted, grows the KV cache with the sequence and " +
            "keeps one copy of the weights it runs, but still holds the token-embedding table as FP32 (500 MiB at vocab 32000 × 4096), and AgileQuant FP32 " +
            "holds every matrix twice (as loaded and as the kernels' panels); llama.cpp runs from the mapped file.");
        return md.ToString();
    }

    // Both engines on the files llama.cpp's quantizer made for each preset, and issue 18's bars on the Q4_K_M and Q4_0 files.
    private static void AppendPresets(StringBuilder md, SyntheticModelShape shape, IReadOnlyList<EngineResult> results,
        Dictionary<(string Shape, string Preset), string> typeMixes, EndToEndSettings s, Func<double, string> F)
    {
        int last = s.PrefillLengths.Count - 1;
        md.AppendLine($"### {shape.Name}: files quantized by llama.cpp's quantizer (llama-quantize presets from the F32 file)");
        md.AppendLine();
        md.AppendLine("AgileQuant runs each file's tensors in the formats their types load into (Q4_0 → packed int4; Q8_0, Q5_0, Q5_1, Q5_K, Q6_K → " +
            "grouped int8; the other types FP32 for now), activations quantized to 8 bits per token; llama.cpp runs the file as it does any GGUF.");
        md.AppendLine();
        md.Append("| preset | tensor types | engine | load s | peak RSS MiB |");
        foreach (int n in s.PrefillLengths) md.Append($" prefill {n} t/s |");
        md.AppendLine($" decode t/s | prefill {s.PrefillLengths[last]} ÷ llama.cpp | decode ÷ llama.cpp |");
        md.AppendLine("|" + string.Concat(Enumerable.Repeat(" --- |", 5 + s.PrefillLengths.Count + 3)));
        foreach (string preset in s.Presets)
        {
            EngineResult ours = results.First(r => r.Engine.Preset == preset && !r.Engine.LlamaCpp);
            EngineResult theirs = results.First(r => r.Engine.Preset == preset && r.Engine.LlamaCpp);
            foreach (EngineResult r in new[] { ours, theirs })
            {
                md.Append($"| {preset} | {typeMixes[(shape.Name, preset)]} | {r.Engine.Name} | {F(r.LoadSeconds)} | {F(r.MemoryMiB)} |");
                foreach (double p in r.PrefillTokensPerSecond) md.Append($" {F(p)} |");
                md.AppendLine($" {F(r.DecodeTokensPerSecond)} | {F(r.PrefillTokensPerSecond[last] / theirs.PrefillTokensPerSecond[last])}× | {F(r.DecodeTokensPerSecond / theirs.DecodeTokensPerSecond)}× |");
            }
        }
        md.AppendLine();
        string[] barred = [.. new[] { "Q4_K_M", "Q4_0" }.Where(s.Presets.Contains)];
        if (barred.Length == 0) return;
        md.AppendLine(shape.Name.StartsWith("llama7b", StringComparison.Ordinal)
            ? "| issue 18's bar | measured | verdict |"
            : "| issue 18's bar (set for the llama7b-4l shape; this shape for comparison) | measured | verdict |");
        md.AppendLine("| --- | --- | --- |");
        foreach (string preset in barred)
        {
            EngineResult ours = results.First(r => r.Engine.Preset == preset && !r.Engine.LlamaCpp);
            EngineResult theirs = results.First(r => r.Engine.Preset == preset && r.Engine.LlamaCpp);
            void Bar(string what, double ratio, double needed) =>
                md.AppendLine($"| {what} ≥ {F(needed)}× | {F(ratio)}× | {(ratio >= needed ? "met" : "**missed**")} |");
            Bar($"AgileQuant decode / llama.cpp decode, {preset} file", ours.DecodeTokensPerSecond / theirs.DecodeTokensPerSecond, 1.2);
            Bar($"AgileQuant prefill {s.PrefillLengths[last]} / llama.cpp prefill, {preset} file", ours.PrefillTokensPerSecond[last] / theirs.PrefillTokensPerSecond[last], 1.5);
        }
        md.AppendLine();
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    internal static void Log(string message) => Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {message}");
}
