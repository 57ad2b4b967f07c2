using System.CommandLine;
using System.Globalization;
using System.Text;
using AgileQuant.Core;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant accuracy</c>: the whole quantization accuracy table (every configuration × TinyStories and WikiText-2).</summary>
internal static class AccuracyCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var stories = new Option<string>("--tinystories") { Description = "TinyStories text (stories separated by <|endoftext|>); per-document protocol.", Required = true };
        var wiki = new Option<string?>("--wikitext") { Description = "WikiText-2 wiki.test.raw; stream protocol with --wiki-context windows (omit to skip)." };
        var calibDocs = new Option<int>("--calib-docs") { Description = "Calibrate (GPTQ) on the first N stories; evaluate on the stories after them.", DefaultValueFactory = _ => 100 };
        var evalDocs = new Option<int?>("--eval-docs") { Description = "Score at most N stories (default: all after the calibration ones)." };
        var wikiContext = new Option<int>("--wiki-context") { Description = "Window length of the WikiText-2 stream protocol.", DefaultValueFactory = _ => 512 };
        var configs = new Option<string>("--configs") { Description = "Comma-separated configurations (default: all).", DefaultValueFactory = _ => string.Join(",", QuantizationConfig.All.Select(c => c.Name)) };
        var output = new Option<string?>("--output") { Description = "Write the markdown table to this file (e.g. docs/accuracy.md)." };
        var pruneRatios = new Option<string?>("--prune-ratios") { Description = "Token-pruning table instead: comma-separated ratios β (e.g. 0.1,0.2,0.3,0.4,0.5), each a progressive schedule, plus β = 0, for every configuration (e.g. docs/accuracy-pruning.md)." };
        var pruneStart = new Option<int?>("--prune-start-layer") { Description = "First pruning layer of the --prune-ratios schedules (default: the middle layer)." };
        var wikiTokens = new Option<int?>("--wiki-tokens") { Description = "Score only the first N tokens of the WikiText-2 stream (default: all)." };
        var kvTypes = new Option<string?>("--kv-types") { Description = "KV cache table instead: comma-separated KV types (f16, q8, q4), each beside the exact cache, for every configuration; written as the KV cache section of --output (e.g. docs/accuracy.md)." };
        var command = new Command("accuracy", "Measure every quantization configuration against FP32: perplexity, KL divergence and top-1 agreement on TinyStories (per-document) and WikiText-2 (stream), as a markdown table.");
        model.AddTo(command);
        command.Options.Add(stories);
        command.Options.Add(wiki);
        command.Options.Add(calibDocs);
        command.Options.Add(evalDocs);
        command.Options.Add(wikiContext);
        command.Options.Add(configs);
        command.Options.Add(output);
        command.Options.Add(pruneRatios);
        command.Options.Add(pruneStart);
        command.Options.Add(wikiTokens);
        command.Options.Add(kvTypes);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            using LoadedModel loaded = model.Load(parse, cancel);
            Tokenizer tokenizer = ModelOptions.RequireTokenizer(loaded);
            // the reference every configuration is compared with: FP32 with the exact KV cache, whatever --kv-type asks of the candidates
            TransformerModel fp32 = PerplexityCommand.ExactKvCache(loaded.Model);
            int calib = parse.GetValue(calibDocs);
            if (calib <= 0) throw new AgileQuantException("--calib-docs must be positive.");
            QuantizationConfig[] chosen = parse.GetValue(configs)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(QuantizationConfig.Parse).ToArray();
            string storiesText = PerplexityCommand.ReadText(parse.GetValue(stories)!, "--tinystories");
            const string separator = "<|endoftext|>";
            int context = loaded.Model.ContextLength;
            int[][] calibration = PerplexityCommand.Tokenize(tokenizer, storiesText, separator, 0, calib, "calibration").Select(d => d.Take(context).ToArray()).ToArray();
            IReadOnlyList<IReadOnlyList<int>> evalStories = PerplexityCommand.Tokenize(tokenizer, storiesText, separator, calib, parse.GetValue(evalDocs) ?? int.MaxValue, "TinyStories");
            string? wikiPath = parse.GetValue(wiki);
            IReadOnlyList<IReadOnlyList<int>>? wikiDocs = wikiPath is null ? null : PerplexityCommand.Tokenize(tokenizer, PerplexityCommand.ReadText(wikiPath, "--wikitext"), null, 0, 1, "WikiText-2");
            int wikiWindow = Math.Min(parse.GetValue(wikiContext), context);
            if (wikiDocs is not null && parse.GetValue(wikiTokens) is int wikiLimit)
            {
                if (wikiLimit < 2) throw new AgileQuantException("--wiki-tokens must be at least 2.");
                wikiDocs = [wikiDocs.SelectMany(d => d).Take(wikiLimit).ToArray()];
            }
            string reproduce = "dotnet run --project AgileQuant.Cli -c Release -- " + string.Join(' ', parse.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
            if (parse.GetValue(kvTypes) is string typesText)
            {
                KvCacheType[] types = typesText.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(t => ModelOptions.ParseKvType(t) ?? throw new AgileQuantException("--kv-types lists KV types to compare with the exact cache (f16, q8, q4), not auto.")).ToArray();
                var report = new KvCacheAccuracyReport(loaded, calib, evalStories.Count, wikiWindow, reproduce);
                foreach (QuantizationConfig config in chosen)
                {
                    TransformerModel quantized = new QuantizationRun(config, 0, NeedsCalibration(config) ? calibration : [], calib).Build(fp32, cancel);
                    foreach (KvCacheType? type in new KvCacheType?[] { null }.Concat(types.Select(t => (KvCacheType?)t)))
                    {
                        TransformerModel candidate = type is null ? quantized : new TransformerModel(quantized.Weights, quantized.Kernel, quantized.Options with { KvCache = type });
                        EvaluationReport s = PerplexityCommand.Evaluate(fp32, candidate, config, evalStories, PerplexityProtocol.Document, context, cancel);
                        EvaluationReport? w = wikiDocs is null ? null : PerplexityCommand.Evaluate(fp32, candidate, config, wikiDocs, PerplexityProtocol.Stream, wikiWindow, cancel);
                        report.Add(new KvCacheAccuracyReport.Row(config.Name, type, candidate.KvCacheBytesPerToken, s, w));
                        Console.Error.WriteLine($"{config.Name} KV {type?.ToString().ToLowerInvariant() ?? "auto"}: TinyStories PPL {s.Result.Perplexity:F4}, KL {s.Kl:F5}"
                            + (w is null ? "" : $"; WikiText-2 PPL {w.Result.Perplexity:F4}, KL {w.Kl:F5}"));
                        if (parse.GetValue(output) is string partialPath) KvCacheAccuracyReport.Section.WriteInto(partialPath, report.Render());
                    }
                }
                string section = report.Render();
                Console.Out.Write(section);
                if (parse.GetValue(output) is string kvPath) KvCacheAccuracyReport.Section.WriteInto(kvPath, section);
                return ExitCodes.Success;
            }
            if (parse.GetValue(pruneRatios) is string ratiosText)
            {
                double[] betas = ParseRatios(ratiosText);
                int layers = loaded.Model.Config.NumLayers;
                int start = parse.GetValue(pruneStart) ?? layers / 2;
                if (start < 0 || start >= layers) throw new AgileQuantException($"--prune-start-layer must be in [0, {layers}), found {start}.");
                string args = string.Join(' ', parse.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
                var report = new PruningAccuracyReport(loaded, start, calib, evalStories.Count, wikiWindow, wikiDocs?.Sum(d => d.Count) ?? 0,
                    $"dotnet run --project AgileQuant.Cli -c Release -- {args}");
                foreach (QuantizationConfig config in chosen)
                {
                    TransformerModel quantized = new QuantizationRun(config, 0, NeedsCalibration(config) ? calibration : [], calib).Build(loaded.Model, cancel);
                    foreach (double beta in betas)
                    {
                        TokenPruningSchedule? schedule = report.Schedule(beta);
                        TransformerModel candidate = schedule is null ? quantized : QuantizationRun.WithPruning(quantized, schedule);
                        string label = $"{config.Name} β={beta}";
                        var s = PruningAccuracyReport.Measure(fp32, candidate, schedule, evalStories, PerplexityProtocol.Document, context, label, cancel);
                        var w = wikiDocs is null ? null : PruningAccuracyReport.Measure(fp32, candidate, schedule, wikiDocs, PerplexityProtocol.Stream, wikiWindow, label, cancel);
                        report.Add(new PruningAccuracyReport.Row(config.Name, beta, s, w));
                        Console.Error.WriteLine($"{label}: TinyStories PPL {s.SamePruning.Candidate.Perplexity:F4} over {s.Dense.Candidate.ScoredTokens:N0} tokens, KL q {s.SamePruning.MeanKlDivergence:F4}, KL total {s.Dense.MeanKlDivergence:F4}"
                            + (w is null ? "" : $"; WikiText-2 PPL {w.SamePruning.Candidate.Perplexity:F4} over {w.Dense.Candidate.ScoredTokens:N0} tokens, KL q {w.SamePruning.MeanKlDivergence:F4}, KL total {w.Dense.MeanKlDivergence:F4}"));
                        if (parse.GetValue(output) is string partialPath) Write(partialPath, report.Render());
                    }
                }
                string pruningTable = report.Render();
                Console.Out.Write(pruningTable);
                if (parse.GetValue(output) is string pruningPath) Write(pruningPath, pruningTable);
                return ExitCodes.Success;
            }

            var rows = new List<(QuantizationConfig Config, long Bytes, EvaluationReport Stories, EvaluationReport? Wiki, double Seconds)>();
            foreach (QuantizationConfig config in chosen)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                TransformerModel candidate = new QuantizationRun(config, 0, NeedsCalibration(config) ? calibration : [], calib).Build(loaded.Model, cancel);
                EvaluationReport s = PerplexityCommand.Evaluate(fp32, candidate, config, evalStories, PerplexityProtocol.Document, context, cancel);
                EvaluationReport? w = wikiDocs is null ? null : PerplexityCommand.Evaluate(fp32, candidate, config, wikiDocs, PerplexityProtocol.Stream, wikiWindow, cancel);
                rows.Add((config, ModelQuantizer.QuantizedWeightBytes(loaded.Model, config), s, w, clock.Elapsed.TotalSeconds));
                Console.Error.WriteLine($"{config.Name}: TinyStories PPL {s.Result.Perplexity:F4}, KL {s.Kl:F4}, top-1 {s.Top1:P2}"
                    + (w is null ? "" : $"; WikiText-2 PPL {w.Result.Perplexity:F4}, KL {w.Kl:F4}, top-1 {w.Top1:P2}"));
                // Keep what is measured so far: a long run that fails later still leaves its rows.
                if (parse.GetValue(output) is string partial) Write(partial, Render(loaded, rows, calib, evalStories.Count, wikiWindow, parse));
            }
            string table = Render(loaded, rows, calib, evalStories.Count, wikiWindow, parse);
            Console.Out.Write(table);
            if (parse.GetValue(output) is string path)
            {
                Write(path, table);
                Console.Error.WriteLine($"wrote {path}");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static bool NeedsCalibration(QuantizationConfig config) => config.Rounding == WeightRounding.Gptq || config.StaticActivationScales;

    /// <summary>0 followed by the distinct ratios of a comma-separated list, each in (0, 1).</summary>
    private static double[] ParseRatios(string text)
    {
        var ratios = new List<double> { 0 };
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out double beta) || !(beta >= 0 && beta < 1))
                throw new AgileQuantException($"--prune-ratios: expected numbers in [0, 1), found \"{part}\".");
            if (!ratios.Contains(beta)) ratios.Add(beta);
        }
        return [.. ratios];
    }

    // the file's KV cache section (accuracy --kv-types) stays after the regenerated table
    private static void Write(string path, string text)
    {
        string kvSection = KvCacheAccuracyReport.Section.Existing(path);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, kvSection.Length == 0 ? text : text + Environment.NewLine + kvSection);
    }

    private static string Render(LoadedModel loaded, List<(QuantizationConfig Config, long Bytes, EvaluationReport Stories, EvaluationReport? Wiki, double Seconds)> rows,
        int calib, int evalCount, int wikiWindow, ParseResult parse)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        var c = loaded.Model.Config;
        EvaluationReport fp32Stories = rows[0].Stories;
        sb.AppendLine($"# Quantization accuracy: {Path.GetFileName(loaded.SourcePath)}");
        sb.AppendLine();
        sb.AppendLine($"Model: {c.Family}, {c.NumLayers} layers, dim {c.HiddenSize}, hidden {c.IntermediateSize}, {c.NumHeads} heads / {c.NumKvHeads} kv heads, vocab {c.VocabSize}. Kernel: {loaded.Model.Kernel.Name}.");
        sb.AppendLine();
        sb.AppendLine($"- **TinyStories** (per-document protocol: BOS + story, cut at {c.MaxSequenceLength} tokens): GPTQ calibrates on stories 1–{calib}; every configuration is evaluated on stories {calib + 1}–{calib + evalCount} ({fp32Stories.Result.ScoredTokens:N0} scored tokens). Calibration and evaluation never overlap.");
        if (rows[0].Wiki is EvaluationReport wikiFp32)
            sb.AppendLine($"- **WikiText-2** (`wiki.test.raw`, stream protocol: one text, tokenized once, non-overlapping {wikiWindow}-token windows; {wikiFp32.Result.ScoredTokens:N0} scored tokens). GPTQ calibration is the same TinyStories stories (the model was trained on TinyStories).");
        sb.AppendLine("- KL = mean over scored positions of KL(P_FP32 ‖ P_config) in nats; top-1 = share of positions where the configuration's argmax equals FP32's. Weight bytes: what one token streams (decoder linears in their packed format + FP32 embedding and head).");
        if (loaded.Model.Options.KvCache is KvCacheType kvType)
            sb.AppendLine($"- KV cache: every configuration stores keys and values as {kvType.ToString().ToLowerInvariant()} (`--kv-type`); FP32, the reference, keeps the exact cache.");
        sb.AppendLine("- 4-bit weights: asymmetric, groups of 32 input columns; 8-bit weights: symmetric per row. Activations: symmetric per token (integer kernels, int32 accumulation); Q/K/V and the KV cache rounded to 8 bits per token (and head); softmax unquantized (log2 softmax is an option). A16 configurations keep float activations. W4A8-MIXED: W4A8-GPTQ with the lowest-ranked 25% of prefill tokens (attention to the start token) at 4 bits at o_proj, the MLP input and down_proj.");
        sb.AppendLine();
        bool wiki = rows[0].Wiki is not null;
        sb.AppendLine("| config | weight bytes | TinyStories PPL | Δ vs FP32 | KL | top-1 |" + (wiki ? " WikiText-2 PPL | Δ vs FP32 | KL | top-1 |" : ""));
        sb.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |" + (wiki ? " ---: | ---: | ---: | ---: |" : ""));
        foreach (var r in rows)
        {
            string Cells(EvaluationReport e) =>
                string.Format(inv, " {0:F4} | {1:+0.00;-0.00;0.00}% | {2:F4} | {3:P1} |", e.Result.Perplexity, 100 * (e.Result.Perplexity / e.Fp32Perplexity - 1), e.Kl, e.Top1);
            sb.Append(inv, $"| {r.Config.Name} | {r.Bytes:N0} |").Append(Cells(r.Stories));
            if (r.Wiki is EvaluationReport w) sb.Append(Cells(w));
            sb.AppendLine();
        }
        sb.AppendLine();
        string args = string.Join(' ', parse.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
        sb.AppendLine($"Reproduce: `dotnet run --project AgileQuant.Cli -c Release -- {args}`");
        return sb.ToString();
    }
}
