using AgileQuant.Benchmarks.EndToEnd;
using BenchmarkDotNet.Running;

namespace AgileQuant.Benchmarks;

internal static class Program
{
    // `interleaved-prefill [rounds]`: pruned vs dense prefill, each case once per round, medians;
    // `e2e-table [...]`: the AgileQuant-vs-llama.cpp speed table and chart (docs/benchmarks.md, .png);
    // `e2e-engine [...]`: one configuration of that table, run by it as a child process (one JSON line);
    // `e2e-kv [...]`: W4A8 vs llama.cpp per KV cache type, long prompt, decode at depth (a section of docs/benchmarks.md);
    // `e2e-kv-engine [...]`: one configuration of it, as a child process;
    // `e2e-quality [...]`: perplexity/KL side by side on stories260K (docs/benchmarks-quality.md);
    // `decode-count [...]`: one engine decodes N greedy tokens, untimed, for instruction counts under qemu (tools/arm64-icount-e2e);
    // `kv-attention [...]`: one layer's attention at depth per KV cache type, alternating, medians;
    // `prefill-microbatch [...]`: a long prefill in one pass against micro-batches, alternating in one process, medians;
    // `llamacpp-file SHAPE PRESET`: writes (or finds) the file llama.cpp's quantizer makes of the shape's F32 file, prints its path;
    // otherwise BenchmarkDotNet.
    private static void Main(string[] args)
    {
        if (args is ["interleaved-prefill", ..])
        {
            EndToEnd.InterleavedPrefillComparison.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 3);
            return;
        }
        if (args.Length > 0 && args[0] == "e2e-table")
        {
            EndToEndTable.Run(EndToEndSettings.Parse(args[1..]));
            return;
        }
        if (args.Length > 0 && args[0] == "e2e-engine")
        {
            EndToEndEngineProcess.RunInThisProcess(args[1..]);
            return;
        }
        if (args.Length > 0 && args[0] == "e2e-kv")
        {
            KvDepthComparison.Run(KvDepthSettings.Parse(args[1..]), args[1..]);
            return;
        }
        if (args.Length > 0 && args[0] == "e2e-kv-engine")
        {
            KvDepthComparison.RunInThisProcess(args[1..]);
            return;
        }
        if (args.Length > 0 && args[0] == "kv-attention")
        {
            Kernels.KvAttentionAtDepth.Run(args[1..]);
            return;
        }
        if (args is ["llamacpp-file", string shapeName, string preset])
        {
            // the files e2e-table --presets writes, alone: e.g. issue 21's memory runs (docs/benchmarks.md) on llama7b-4l Q4_0
            Cli.Bench.SyntheticModelShape shape = Cli.Bench.SyntheticModelShape.Parse(shapeName);
            string directory = Path.Combine(Path.GetTempPath(), "agilequant-e2e"), f32 = Path.Combine(directory, $"{shape.Name}-{Models.Gguf.GgmlType.F32}.gguf");
            Directory.CreateDirectory(directory);
            if (!File.Exists(f32)) Cli.Bench.SyntheticGgufModel.Write(f32, shape, Models.Gguf.GgmlType.F32);
            Console.Out.WriteLine(LlamaCppPresetFiles.Quantize(f32, preset, Environment.ProcessorCount));
            return;
        }
        if (args is ["prefill-microbatch", ..])
        {
            MicroBatchPrefillComparison.Run(args[1..]);
            return;
        }
        if (args.Length > 0 && args[0] == "e2e-quality")
        {
            QualityTable.Run(args[1..]);
            return;
        }
        if (args is ["decode-count", ..])
        {
            DecodeInstructionCount.Run(args[1..]);
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
