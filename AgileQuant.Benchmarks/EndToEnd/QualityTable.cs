using System.Globalization;
using System.Text;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models;
using AgileQuant.Cli.Bench;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// Quality side by side on a real model (stories260K): perplexity, mean KL(FP32 ‖ candidate) and top-1 agreement with
/// our FP32 logits, per TinyStories document (BOS + text, teacher-forced), for our schemes and for llama.cpp running our
/// GGUF exports (F32 as a sanity row, Q8_0, Q4_0) with its logits read through LLamaSharp.
/// Command line: <c>e2e-quality --model stories260K.bin --text tinystories.txt --docs 100 --out docs/benchmarks-quality.md</c>.
/// </summary>
public static class QualityTable
{
    /// <summary>Runs the comparison from <paramref name="args"/> and writes the markdown table.</summary>
    public static void Run(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        string Arg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
        string modelPath = Arg("--model", "../shared/assets/models/stories260K/stories260K.bin");
        string textPath = Arg("--text", "../shared/assets/text/tinystories/tinystories_valid_first1000.txt");
        int docs = int.Parse(Arg("--docs", "100"), CultureInfo.InvariantCulture);
        int maxTokens = int.Parse(Arg("--max-tokens", "256"), CultureInfo.InvariantCulture);
        string output = Arg("--out", Path.Combine("docs", "benchmarks-quality.md"));
        int threads = int.Parse(Arg("--threads", "2"), CultureInfo.InvariantCulture);

        var kernelOptions = new KernelOptions { Threads = threads };
        IMatMulKernel kernel = KernelSelector.Create(kernelOptions);
        LoadedModel loaded = ModelLoader.Load(modelPath, new ModelLoadOptions { KernelOptions = kernelOptions });
        var tokenizer = (ScoredMergeTokenizer)(loaded.Tokenizer ?? throw new ArgumentException($"no tokenizer beside {modelPath}"));
        int[][] documents = TextCorpus.SplitDocuments(File.ReadAllText(textPath), "<|endoftext|>")
            .Select(d => tokenizer.EncodeToIds(d).Take(maxTokens).ToArray()).Where(d => d.Length > 1).Take(docs).ToArray();
        string directory = Directory.CreateTempSubdirectory("agilequant-quality-").FullName;
        try
        {
            var files = new Dictionary<GgmlType, string>();
            foreach (GgmlType type in new[] { GgmlType.F32, GgmlType.Q8_0, GgmlType.Q4_0 })
            {
                files[type] = Path.Combine(directory, $"model-{type}.gguf");
                GgufModelWriter.Write(files[type], loaded.Model.Weights, GgufVocabulary.FromTokenizer(tokenizer, loaded.Model.Config.VocabSize), new GgufWriteOptions { WeightType = type });
            }
            float[][][] reference = documents.Select(d => AllLogits(loaded.Model, d)).ToArray();
            var rows = new List<(string Name, double Ppl, double Kl, double Top1)>();
            void Score(string name, Func<int[], float[][]> logitsOf)
            {
                double nll = 0, kl = 0;
                long positions = 0, agree = 0;
                for (int d = 0; d < documents.Length; d++)
                {
                    float[][] candidate = logitsOf(documents[d]);
                    for (int p = 0; p + 1 < documents[d].Length; p++)
                    {
                        nll += PerplexityEvaluator.TokenNll(candidate[p], documents[d][p + 1]);
                        kl += DistributionComparison.KlDivergence(reference[d][p], candidate[p]);
                        agree += Core.Generation.TokenSampler.ArgMax(candidate[p]) == Core.Generation.TokenSampler.ArgMax(reference[d][p]) ? 1 : 0;
                        positions++;
                    }
                }
                rows.Add((name, Math.Exp(nll / positions), kl / positions, (double)agree / positions));
                Console.Error.WriteLine($"{name}: perplexity {rows[^1].Ppl:F4}, KL {rows[^1].Kl:F5}, top-1 {rows[^1].Top1:P2}");
            }
            Score("AgileQuant FP32 (reference)", d => AllLogits(loaded.Model, d));
            foreach (string scheme in new[] { "W8A8", "W4A8-RTN", "W4A4-RTN" })
            {
                TransformerModel quantized = ModelQuantizer.Quantize(loaded.Model, QuantizationConfig.Parse(scheme));
                Score($"AgileQuant {scheme} (from FP32)", d => AllLogits(quantized, d));
            }
            TransformerModel fromQ4 = GgufSchemeLoader.Load(files[GgmlType.Q4_0], "W4A8-RTN", kernel);
            Score("AgileQuant W4A8 on llama.cpp's Q4_0 file", d => AllLogits(fromQ4, d));
            foreach ((GgmlType type, string name) in new[] { (GgmlType.F32, "llama.cpp F32"), (GgmlType.Q8_0, "llama.cpp Q8_0"), (GgmlType.Q4_0, "llama.cpp Q4_0") })
            {
                using var engine = new LlamaCppEngine(files[type], threads, Math.Max(maxTokens, 64));
                Score(name, engine.AllLogits);
            }
            var md = new StringBuilder();
            md.AppendLine("# Quality side by side: AgileQuant vs llama.cpp on stories260K");
            md.AppendLine();
            md.AppendLine($"Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `dotnet run -c Release --project AgileQuant.Benchmarks -- e2e-quality --docs {docs} --max-tokens {maxTokens}`. " +
                $"{documents.Length} TinyStories validation documents (BOS + text, at most {maxTokens} tokens each, {documents.Sum(d => d.Length - 1)} scored positions), teacher-forced; " +
                "KL(FP32 ‖ candidate) and top-1 agreement against our FP32 logits. llama.cpp (LLamaSharp 0.30.0) runs our GGUF exports of the same weights; " +
                "Q8_0/Q4_0 are ggml's reference quantizers (ffn_down, 172 wide, stays F16 as llama-quantize would); its logits come from llama_get_logits_ith.");
            md.AppendLine();
            md.AppendLine("| configuration | perplexity | Δ vs FP32 | mean KL | top-1 agreement |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            double basePpl = rows[0].Ppl;
            foreach ((string name, double ppl, double kl, double top1) in rows)
                md.AppendLine($"| {name} | {ppl.ToString("F4", CultureInfo.InvariantCulture)} | {((ppl / basePpl - 1) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture)}% | {kl.ToString("F5", CultureInfo.InvariantCulture)} | {(top1 * 100).ToString("F2", CultureInfo.InvariantCulture)}% |");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            File.WriteAllText(output, md.ToString());
            Console.Error.WriteLine($"wrote {output}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static float[][] AllLogits(TransformerModel model, int[] tokens)
    {
        int vocab = model.Config.VocabSize;
        float[] all = model.CreateContext().Forward(tokens, allLogits: true);
        return Enumerable.Range(0, tokens.Length).Select(p => all.AsSpan(p * vocab, vocab).ToArray()).ToArray();
    }
}
