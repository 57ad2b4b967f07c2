using System.Globalization;
using System.Runtime;
using System.Text.Json;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// <c>decode-count --engine agilequant|llama.cpp --file F.gguf --decode N [--threads 1] [--context 64]</c>: loads one
/// engine on a GGUF file, feeds token 1 to an empty context, then decodes N greedy tokens one at a time, and prints one
/// JSON line with the tokens chosen (the proof that each step ran a forward pass). No timing: <c>tools/arm64-icount-e2e</c>
/// runs it under qemu with the instruction-counting plugin for two values of N, and the difference of the two counts
/// divided by the difference of N is the instructions per decoded token (load, start-up and the first token cancel).
/// AgileQuant runs the file as loaded (scheme W8A16: the kernels' own 8-bit linear inputs, per-group activation scales on
/// the block formats, exact KV cache), the configuration the llama-quantize rows of <see cref="EngineConfig.All"/> run;
/// llama.cpp runs with its defaults (F16 KV cache). Both with the same thread count (1 for a count that does not depend on
/// timing: qemu-icount's README).
/// </summary>
public static class DecodeInstructionCount
{
    /// <summary>Parses the arguments, runs the decode and prints the JSON line.</summary>
    /// <exception cref="ArgumentException">A missing or unknown argument.</exception>
    public static void Run(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
        string Required(string name) => Arg(name) ?? throw new ArgumentException($"decode-count needs {name}");
        int Int(string name, int fallback) => Arg(name) is string text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;
        string engineName = Required("--engine").ToLowerInvariant();
        string file = Required("--file");
        int steps = Int("--decode", 0);
        int threads = Int("--threads", 1);
        int context = Int("--context", Math.Max(64, steps + 1));
        if (steps < 1) throw new ArgumentException("decode-count needs --decode N with N >= 1");
        if (!File.Exists(file)) throw new ArgumentException($"decode-count: no file {file}");
        EngineConfig engine = engineName switch
        {
            "agilequant" => new EngineConfig("AgileQuant (as loaded)", GgmlType.F32, false, "W8A16"),
            "llama.cpp" => new EngineConfig("llama.cpp", GgmlType.F32, true),
            _ => throw new ArgumentException($"decode-count: unknown engine '{engineName}'; expected agilequant or llama.cpp"),
        };
        using IEndToEndEngine loaded = engine.Load(file, threads, context);
        // No collection inside the counted steps: one costs millions of instructions and could fall in one run of a pair
        // and not the other (when depends on the GC's budgets). The collections before the region are the same for every
        // N, so they cancel; `collections` reports any that ran inside it anyway.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        bool region = StartNoCollectionRegion();
        int before = GC.CollectionCount(0);
        int[] tokens = loaded.GreedyTokens(1, steps);
        int collections = GC.CollectionCount(0) - before;
        if (region && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        Console.Out.WriteLine(JsonSerializer.Serialize(new { engine = engine.Name, file = Path.GetFileName(file), threads, steps, collections, tokens }));
    }

    // The largest no-collection budget the GC grants here (it refuses budgets over its ephemeral space).
    private static bool StartNoCollectionRegion()
    {
        foreach (long bytes in new[] { 256L << 20, 64L << 20, 16L << 20 })
        {
            try
            {
                return GC.TryStartNoGCRegion(bytes);
            }
            catch (ArgumentOutOfRangeException)
            {
                // too large for this GC: try a smaller budget
            }
        }
        return false;
    }
}
