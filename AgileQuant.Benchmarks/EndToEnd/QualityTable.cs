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
/// GGUF exports (F32 as a sanity row, Q8_0, Q4_0) with its logits read through LLamaSharp; then, per llama-quantize preset
/// (<c>--presets</c>, default Q4_0, Q4_K_M, Q5_K_M, Q6_K, Q8_0; <c>none</c> for none), the file llama.cpp's quantizer makes
/// of our F32 export, run by both engines.
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
        string presetList = Arg("--presets", string.Join(',', LlamaCppPresetFiles.Default));
        string[] presets = presetList == "none" ? [] : presetList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (string preset in presets) _ = LlamaCppPresetFiles.Parse(preset);
        bool probe = args.Contains("--probe");

        var kernelOptions = new KernelOptions { Threads = threads };
        IMatMulKernel kernel = KernelSelector.Create(kernelOptions);
        // the same kernels with one activation scale per token on every format (the default scales GGUF block formats per group)
        IMatMulKernel perTokenKernel = KernelSelector.Create(kernelOptions with { ActivationScales = ActivationScaleGranularity.PerToken });
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
            var perDocument = new Dictionary<string, double[]>();
            void Score(string name, Func<int[], float[][]> logitsOf)
            {
                double nll = 0, kl = 0;
                long positions = 0, agree = 0;
                var documentKl = new double[documents.Length]; // Σ KL over each document's positions
                for (int d = 0; d < documents.Length; d++)
                {
                    float[][] candidate = logitsOf(documents[d]);
                    for (int p = 0; p + 1 < documents[d].Length; p++)
                    {
                        nll += PerplexityEvaluator.TokenNll(candidate[p], documents[d][p + 1]);
                        double positionKl = DistributionComparison.KlDivergence(reference[d][p], candidate[p]);
                        kl += positionKl;
                        documentKl[d] += positionKl;
                        agree += Core.Generation.TokenSampler.ArgMax(candidate[p]) == Core.Generation.TokenSampler.ArgMax(reference[d][p]) ? 1 : 0;
                        positions++;
                    }
                }
                rows.Add((name, Math.Exp(nll / positions), kl / positions, (double)agree / positions));
                perDocument[name] = documentKl;
                Console.Error.WriteLine($"{name}: perplexity {rows[^1].Ppl:F4}, KL {rows[^1].Kl:F5}, top-1 {rows[^1].Top1:P2}");
            }
            if (probe)
            {
                // diagnostics only (stderr): what each difference from llama.cpp's arithmetic costs on each preset's file
                foreach (string preset in presets.Prepend("Q4_0-ours"))
                {
                    string path = preset == "Q4_0-ours" ? files[GgmlType.Q4_0] : LlamaCppPresetFiles.Quantize(files[GgmlType.F32], preset, threads);
                    Console.Error.WriteLine($"--- {preset}: {LlamaCppPresetFiles.TypeMix(path)}");
                    perDocument.Clear();
                    QualityProbe.Run(path, kernel, threads, Math.Max(maxTokens, 64), Score);
                    QualityProbe.PairedDifferences(perDocument, "llama.cpp", documents.Select(d => d.Length - 1).ToArray());
                }
                return;
            }
            Score("AgileQuant FP32 (reference)", d => AllLogits(loaded.Model, d));
            foreach (string scheme in new[] { "W8A8", "W4A8-RTN", "W4A4-RTN" })
            {
                TransformerModel quantized = ModelQuantizer.Quantize(loaded.Model, QuantizationConfig.Parse(scheme));
                Score($"AgileQuant {scheme} (from FP32)", d => AllLogits(quantized, d));
            }
            TransformerModel fromQ4 = GgufSchemeLoader.Load(files[GgmlType.Q4_0], "W4A8-RTN", kernel);
            Score("AgileQuant W4A8 on llama.cpp's Q4_0 file", d => AllLogits(fromQ4, d));
            // W4A16 names no activation rounding beyond the integer kernels' own 8-bit linear inputs: Q/K/V and KV cache stay FP32
            TransformerModel fromQ4LinearOnly = GgufSchemeLoader.Load(files[GgmlType.Q4_0], "W4A16-RTN", kernel);
            Score("**AgileQuant on llama.cpp's Q4_0 file as loaded** (8-bit linear inputs only, per-group scales)", d => AllLogits(fromQ4LinearOnly, d));
            TransformerModel fromQ4PerToken = GgufSchemeLoader.Load(files[GgmlType.Q4_0], "W4A16-RTN", perTokenKernel);
            Score("AgileQuant on llama.cpp's Q4_0 file, per-token scales", d => AllLogits(fromQ4PerToken, d));
            foreach ((GgmlType type, string name) in new[] { (GgmlType.F32, "llama.cpp F32"), (GgmlType.Q8_0, "llama.cpp Q8_0"), (GgmlType.Q4_0, "llama.cpp Q4_0") })
            {
                using var engine = new LlamaCppEngine(files[type], threads, Math.Max(maxTokens, 64));
                Score(name, engine.AllLogits);
            }
            int[] scoredPositions = [.. documents.Select(d => d.Length - 1)];
            var paired = new List<string>();
            void Paired(string preset, string ours, string theirs)
            {
                (double mean, double error) = QualityProbe.PairedDifference(perDocument[ours], perDocument[theirs], scoredPositions);
                paired.Add($"- {preset}: {mean.ToString("+0.00000;-0.00000", CultureInfo.InvariantCulture)} ± {error.ToString("0.00000", CultureInfo.InvariantCulture)}");
            }
            Paired("Q4_0 (our export)", "**AgileQuant on llama.cpp's Q4_0 file as loaded** (8-bit linear inputs only, per-group scales)", "llama.cpp Q4_0");
            var mixes = new List<string>();
            foreach (string preset in presets)
            {
                string path;
                try
                {
                    path = LlamaCppPresetFiles.Quantize(files[GgmlType.F32], preset, threads);
                }
                catch (InvalidOperationException e)
                {
                    // llama.cpp's error log (printed above by the log callback) names the reason; the line below stays free of temp paths
                    mixes.Add($"{preset}: not made — llama.cpp's quantizer refused the F32 export (llama_model_quantize failed)");
                    Console.Error.WriteLine($"{preset}: {e.Message}");
                    continue;
                }
                mixes.Add($"{preset}: {LlamaCppPresetFiles.TypeMix(path)}");
                // W8A16 names no activation rounding beyond the integer kernels' own 8-bit linear inputs (Q/K/V and KV cache FP32,
                // as a plain load runs the file); W8A8 adds the paper's 8-bit Q/K/V and KV cache
                TransformerModel ours = GgufSchemeLoader.Load(path, "W8A16", kernel);
                Score($"**AgileQuant on llama.cpp's {preset} file as loaded** (8-bit linear inputs, per-group scales)", d => AllLogits(ours, d));
                TransformerModel oursPerToken = GgufSchemeLoader.Load(path, "W8A16", perTokenKernel);
                Score($"AgileQuant on llama.cpp's {preset} file, per-token scales", d => AllLogits(oursPerToken, d));
                TransformerModel oursW8A8 = GgufSchemeLoader.Load(path, "W8A8", kernel);
                Score($"AgileQuant on llama.cpp's {preset} file, W8A8 scheme (per-group scales; 8-bit Q/K/V and KV cache too)", d => AllLogits(oursW8A8, d));
                using var engine = new LlamaCppEngine(path, threads, Math.Max(maxTokens, 64));
                Score($"llama.cpp {preset} (llama-quantize)", engine.AllLogits);
                Paired(preset, $"**AgileQuant on llama.cpp's {preset} file as loaded** (8-bit linear inputs, per-group scales)", $"llama.cpp {preset} (llama-quantize)");
            }
            var md = new StringBuilder();
            md.AppendLine("# Quality side by side: AgileQuant vs llama.cpp on stories260K");
            md.AppendLine();
            md.AppendLine($"Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `dotnet run -c Release --project AgileQuant.Benchmarks -- e2e-quality --docs {docs} --max-tokens {maxTokens}{(presetList == string.Join(',', LlamaCppPresetFiles.Default) ? "" : $" --presets {presetList}")}`. " +
                $"{documents.Length} TinyStories validation documents (BOS + text, at most {maxTokens} tokens each, {documents.Sum(d => d.Length - 1)} scored positions), teacher-forced; " +
                "KL(FP32 ‖ candidate) and top-1 agreement against our FP32 logits. llama.cpp (LLamaSharp 0.30.0) runs our GGUF exports of the same weights; " +
                "Q8_0/Q4_0 are ggml's reference quantizers (ffn_down, 172 wide, stays F16 as llama-quantize would); its logits come from llama_get_logits_ith.");
            md.AppendLine();
            md.AppendLine("| configuration | perplexity | Δ vs FP32 | mean KL | top-1 agreement |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            double basePpl = rows[0].Ppl;
            foreach ((string name, double ppl, double kl, double top1) in rows)
                md.AppendLine($"| {name} | {ppl.ToString("F4", CultureInfo.InvariantCulture)} | {((ppl / basePpl - 1) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture)}% | {kl.ToString("F5", CultureInfo.InvariantCulture)} | {(top1 * 100).ToString("F2", CultureInfo.InvariantCulture)}% |");
            if (mixes.Count > 0)
            {
                md.AppendLine();
                md.AppendLine("The preset files are what llama.cpp's own quantizer (llama_model_quantize through LLamaSharp, no importance matrix) makes of the " +
                    "F32 export; stories260K's 64-wide rows are not whole 256-blocks, so the k-quant presets fall back per tensor (Q4_K → Q5_0, Q5_K → Q5_1, " +
                    "Q6_K → Q8_0; 172-wide rows → F16), which runs Q5_0/Q5_1/Q8_0 on real weights. AgileQuant loads Q4_0 as packed int4 and Q8_0/Q5_0/Q5_1/Q5_K/Q6_K " +
                    "as grouped int8 and Q4_1/Q2_K/Q3_K/Q4_K/IQ4_NL/IQ4_XS as super-block int4 (the file's values exactly; F16 as FP32). The integer kernels quantize " +
                    "each linear input to 8 bits: by default with one scale per weight group (16 or 32 columns) on grouped int8 and per super-block on super-block " +
                    "int4 and per 32 on packed int4 (Q4_0) (llama.cpp: per 32 or 256), one scale per token on F32 rows; \"as loaded\" is what a plain load runs (Q/K/V and " +
                    "KV cache in FP32), the W8A8 scheme rounds Q/K/V and the KV cache to 8 bits as well (docs/accuracy.md)." +
                    (mixes.Any(m => m.Contains("not made", StringComparison.Ordinal))
                        ? " llama-quantize has fallback types only for the k- and i-quants: a preset whose 32-blocks do not divide a row (Q4_0 and Q8_0 on the " +
                          "172-wide ffn_down) is refused, and the llama.cpp Q8_0/Q4_0 rows above run our exports of those types instead."
                        : "") +
                    " Tensor types per file:");
                md.AppendLine();
                foreach (string mix in mixes) md.AppendLine($"- {mix}");
            }
            md.AppendLine();
            md.AppendLine("Paired difference of the mean KL, AgileQuant as loaded minus llama.cpp on the same file, with its standard error over the " +
                $"{documents.Length} documents (each document's KL summed over its positions, documents as clusters; `e2e-quality --probe` traces the parts):");
            md.AppendLine();
            foreach (string line in paired) md.AppendLine(line);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            File.WriteAllText(output, md.ToString());
            Console.Error.WriteLine($"wrote {output}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    internal static float[][] AllLogits(TransformerModel model, int[] tokens)
    {
        int vocab = model.Config.VocabSize;
        float[] all = model.CreateContext().Forward(tokens, allLogits: true);
        return Enumerable.Range(0, tokens.Length).Select(p => all.AsSpan(p * vocab, vocab).ToArray()).ToArray();
    }
}
