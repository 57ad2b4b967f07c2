using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Cli.Bench;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant bench e2e</c>: whole-model speed of our configurations on a synthetic LLaMA shape written as GGUF
/// (the llama.cpp side of the comparison runs in AgileQuant.Benchmarks <c>e2e-table</c>, which alone references LLamaSharp).
/// </summary>
internal static class BenchEndToEndCommand
{
    private static readonly Dictionary<string, (GgmlType File, string Scheme, bool Pruned)> Configurations = new(StringComparer.OrdinalIgnoreCase)
    {
        ["FP32"] = (GgmlType.F32, "FP32", false),
        ["W8A8"] = (GgmlType.Q8_0, "W8A8", false),
        ["W4A8"] = (GgmlType.Q4_0, "W4A8-RTN", false),
        ["W4A4"] = (GgmlType.Q4_0, "W4A4-RTN", false),
        ["W4A8-pruned"] = (GgmlType.Q4_0, "W4A8-RTN", true),
    };

    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = "Model shape: llama7b[-Nl] (default 4 layers), tinyllama, stories110m or small, e.g. llama7b-4l.", DefaultValueFactory = _ => "llama7b-4l" };
        var configs = new Option<string>("--configs") { Description = "Comma-separated: FP32, W8A8, W4A8, W4A4, W4A8-pruned.", DefaultValueFactory = _ => "FP32,W8A8,W4A8,W4A4,W4A8-pruned" };
        var prefill = new Option<string>("--prefill") { Description = "Comma-separated prefill lengths.", DefaultValueFactory = _ => "128,512" };
        var decode = new Option<int>("--decode") { Description = "Greedy decode steps after a 1-token prompt.", DefaultValueFactory = _ => 64 };
        var repeats = new Option<int>("--repeats") { Description = "Repetitions, configurations alternating; medians are reported.", DefaultValueFactory = _ => 3 };
        var prune = new Option<double>("--prune-ratio") { Description = "β of W4A8-pruned: progressive pruning from the middle layer.", DefaultValueFactory = _ => 0.5 };
        var models = new Option<string>("--models") { Description = "Directory for the generated GGUF files (reused when present).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "agilequant-e2e") };
        var threads = new Option<int>("--threads") { Description = "Threads (0 = one per processor).", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per configuration." };
        var kvType = ModelOptions.KvTypeOption();
        var contextOption = new Option<int?>("--context") { Description = "Context length of every configuration (default: the shape's); the KV cache grows with the tokens held, not with this." };
        var command = new Command("e2e", "Whole-model prefill and decode tokens/s, load time and KV cache memory of our configurations on a seeded synthetic LLaMA shape, written as GGUF (F32, Q8_0, Q4_0).");
        foreach (Option o in new Option[] { shape, configs, prefill, decode, repeats, prune, models, threads, json, kvType, contextOption }) command.Options.Add(o);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            SyntheticModelShape model = SyntheticModelShape.Parse(parse.GetValue(shape)!);
            string[] names = parse.GetValue(configs)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (string name in names)
                if (!Configurations.ContainsKey(name)) throw new AgileQuantException($"unknown configuration '{name}'; expected {string.Join(", ", Configurations.Keys)}.");
            int[] lengths = parse.GetValue(prefill)!.Split(',').Select(x => int.TryParse(x, CultureInfo.InvariantCulture, out int n) && n > 0 ? n
                : throw new AgileQuantException($"--prefill must list positive lengths, found '{x}'.")).ToArray();
            int steps = parse.GetValue(decode), reps = Math.Max(1, parse.GetValue(repeats));
            if (steps <= 0) throw new AgileQuantException("--decode must be positive.");
            KvCacheType? kv = ModelOptions.ParseKvType(parse.GetValue(kvType)!);
            int contextLength = parse.GetValue(contextOption) ?? model.Config.MaxSequenceLength;
            if (contextLength <= 0) throw new AgileQuantException($"--context must be positive, found {contextLength}.");
            if (lengths.Max() > contextLength || steps + 1 > contextLength)
                throw new AgileQuantException($"--prefill and --decode must fit the context of {contextLength} tokens (--context).");
            string directory = parse.GetValue(models)!;
            Directory.CreateDirectory(directory);
            var kernelOptions = new KernelOptions { Threads = ModelOptions.ReadThreads(parse, threads) };
            var random = new Random(11);
            int[][] prompts = lengths.Select(n => Enumerable.Range(0, n).Select(i => i == 0 ? 1 : random.Next(3, model.Config.VocabSize)).ToArray()).ToArray();
            var samples = names.ToDictionary(n => n, _ => new List<double[]>());
            // what each configuration's KV cache holds after the longest prefill (the same every repetition), and its bytes per token
            var kvBytes = new Dictionary<string, (long Held, double PerToken, string Description)>();
            for (int rep = 0; rep < reps; rep++)
                for (int k = 0; k < names.Length; k++)
                {
                    cancel.ThrowIfCancellationRequested();
                    string name = names[(k + rep) % names.Length];
                    (GgmlType type, string scheme, bool pruned) = Configurations[name];
                    string path = Path.Combine(directory, $"{model.Name}-{type}.gguf");
                    if (!File.Exists(path))
                    {
                        Console.Error.WriteLine($"writing {path}");
                        SyntheticGgufModel.Write(path, model, type);
                    }
                    long start = Stopwatch.GetTimestamp();
                    int layers = model.Config.NumLayers;
                    TokenPruningSchedule? schedule = pruned ? TokenPruningSchedule.Progressive(layers, layers / 2, parse.GetValue(prune)) : null;
                    TransformerModel loaded = GgufSchemeLoader.Load(path, scheme, KernelSelector.Create(kernelOptions), schedule);
                    loaded = new TransformerModel(loaded.Weights, loaded.Kernel, loaded.Options with { KvCache = kv, ContextLength = contextLength });
                    var row = new List<double> { Stopwatch.GetElapsedTime(start).TotalSeconds };
                    loaded.CreateContext().Forward(prompts[0][..Math.Min(8, prompts[0].Length)]); // warm-up
                    foreach (int[] prompt in prompts)
                    {
                        InferenceContext prefilled = loaded.CreateContext();
                        start = Stopwatch.GetTimestamp();
                        prefilled.Forward(prompt);
                        row.Add(prompt.Length / Stopwatch.GetElapsedTime(start).TotalSeconds);
                        if (prompt.Length == lengths.Max()) kvBytes[name] = (prefilled.KvCacheBytes, loaded.KvCacheBytesPerToken, loaded.KvCacheDescription);
                    }
                    InferenceContext context = loaded.CreateContext();
                    float[] logits = context.Forward([1]);
                    start = Stopwatch.GetTimestamp();
                    for (int i = 0; i < steps; i++) logits = context.Forward([TokenSampler.ArgMax(logits)]);
                    row.Add(steps / Stopwatch.GetElapsedTime(start).TotalSeconds);
                    samples[name].Add(row.ToArray());
                    Console.Error.WriteLine($"rep {rep + 1}/{reps} {name}: load {row[0]:F2} s, prefill {string.Join(" / ", row.Skip(1).Take(lengths.Length).Select(x => x.ToString("F1", CultureInfo.InvariantCulture)))} t/s, decode {row[^1]:F2} t/s");
                }
            double Median(string name, int column) => samples[name].Select(r => r[column]).Order().ElementAt(reps / 2);
            string? baseline = names.FirstOrDefault(n => n.Equals("FP32", StringComparison.OrdinalIgnoreCase));
            foreach (string name in names)
            {
                double decodeRate = Median(name, lengths.Length + 1);
                double[] prefillRates = Enumerable.Range(0, lengths.Length).Select(i => Median(name, 1 + i)).ToArray();
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                    {
                        ["shape"] = model.Name, ["config"] = name, ["threads"] = KernelSelector.Create(kernelOptions).Threads, ["repeats"] = reps,
                        ["load_seconds_median"] = Median(name, 0), ["prefill_lengths"] = lengths, ["prefill_tokens_per_second_median"] = prefillRates,
                        ["decode_tokens"] = steps, ["decode_tokens_per_second_median"] = decodeRate,
                        ["context_length"] = contextLength, ["kv_cache"] = kvBytes[name].Description, ["kv_cache_bytes_per_token"] = kvBytes[name].PerToken,
                        ["kv_cache_bytes_after_longest_prefill"] = kvBytes[name].Held,
                    }));
                    continue;
                }
                string ratio = baseline is null ? "" : $" ({prefillRates[^1] / Median(baseline, lengths.Length):F2}× / {decodeRate / Median(baseline, lengths.Length + 1):F2}× FP32)";
                Console.Out.WriteLine($"{model.Name} {name}: load {Median(name, 0):F2} s, prefill {string.Join(" / ", lengths.Zip(prefillRates, (n, r) => $"{n}: {r:F1}"))} t/s, decode {decodeRate:F2} t/s{ratio}; "
                    + $"KV cache {kvBytes[name].Description}: {kvBytes[name].Held / 1048576.0:F1} MiB held after {lengths.Max()} tokens ({kvBytes[name].PerToken:N0} bytes per token)");
            }
            return ExitCodes.Success;
        }));
        return command;
    }
}
