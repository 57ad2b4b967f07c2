using System.Globalization;
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
        int[] tokens = loaded.GreedyTokens(1, steps);
        Console.Out.WriteLine(JsonSerializer.Serialize(new { engine = engine.Name, file = Path.GetFileName(file), threads, steps, tokens }));
    }
}
