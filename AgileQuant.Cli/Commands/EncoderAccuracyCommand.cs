using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using AgileQuant.Core.Encoder;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Embeddings;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant encoder-accuracy</c>: embeddings of quantized and pruned encoders against the FP32 encoder on the
/// first N non-empty lines of a text: mean and minimum cosine, and 10-nearest-neighbour overlap; a Markdown report.
/// </summary>
internal static class EncoderAccuracyCommand
{
    /// <summary>A quantization scheme and the SmoothQuant α applied before it (0 = none).</summary>
    private sealed record Scheme(QuantizationConfig Config, double SmoothAlpha)
    {
        public string Label => SmoothAlpha > 0 ? string.Create(CultureInfo.InvariantCulture, $"{Config.Name}, smoothed α {SmoothAlpha:0.##}") : Config.Name;

        public bool Quantizes => Config.QuantizesWeights || Config.QuantizesActivations;

        /// <summary>"NAME" (smoothing <paramref name="defaultAlpha"/>) or "NAME@α".</summary>
        public static Scheme Parse(string entry, double defaultAlpha)
        {
            int at = entry.IndexOf('@');
            if (at < 0) return new Scheme(EncoderSchemes.Parse(entry), defaultAlpha);
            if (!double.TryParse(entry[(at + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double alpha) || !(alpha >= 0 && alpha < 1))
                throw new ArgumentException($"--configs entry \"{entry}\": expected NAME or NAME@α with α in [0, 1).");
            return new Scheme(EncoderSchemes.Parse(entry[..at]), alpha);
        }
    }

    private sealed record Variant(Scheme Scheme, string Pruning, double Beta, TokenScoring Scoring, PruningDirection Direction);

    public static Command Create()
    {
        var model = new EncoderModelOptions();
        var text = new Option<string>("--text") { Description = "Evaluation text: the first --lines non-empty lines are the sentences; calibration uses the lines after them.", Required = true };
        var lines = new Option<int>("--lines") { Description = "Sentences to evaluate.", DefaultValueFactory = _ => 2000 };
        var calibLines = new Option<int>("--calib-lines") { Description = "GPTQ calibration sentences, taken after the evaluated lines.", DefaultValueFactory = _ => 128 };
        var configs = new Option<string>("--configs") { Description = "Comma-separated schemes; NAME@α smooths that scheme with SmoothQuant α (overrides --smooth-alpha).", DefaultValueFactory = _ => "FP32,W8A8,W4A16-GPTQ,W4A8-GPTQ,W4A4-GPTQ" };
        var ratios = new Option<string>("--ratios") { Description = "Comma-separated pruned fractions β (progressive schedule from --prune-start-layer).", DefaultValueFactory = _ => "0.25,0.5" };
        var quantizedRatios = new Option<string>("--quantized-ratios") { Description = "Comma-separated β measured with [CLS] pruning on the quantized schemes (FP32 gets every --ratios value with random and highest-score controls).", DefaultValueFactory = _ => "0.5" };
        var smoothAlpha = new Option<double>("--smooth-alpha") { Description = "SmoothQuant migration strength α for the quantized schemes (0 = off; 0.5 = the paper's default), from the calibration lines.", DefaultValueFactory = _ => 0 };
        var startLayer = new Option<int>("--prune-start-layer") { Description = "First layer that prunes.", DefaultValueFactory = _ => 2 };
        var output = new Option<string?>("--output") { Description = "Markdown report path (rewritten after every configuration)." };
        var command = new Command("encoder-accuracy", "Accuracy of quantized / token-pruned encoder embeddings vs FP32: mean and min cosine, 10-NN overlap.")
        {
            text, lines, calibLines, configs, ratios, quantizedRatios, smoothAlpha, startLayer, output,
        };
        model.AddTo(command);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            int lineCount = parse.GetValue(lines), calibCount = parse.GetValue(calibLines);
            ArgumentOutOfRangeException.ThrowIfLessThan(lineCount, 2, "--lines");
            int workers = ModelOptions.ReadThreads(parse, model.Threads) is > 0 and var t ? t : Environment.ProcessorCount;
            SentenceEncoder fp32 = model.Load(parse, kernelThreads: 1);
            string textPath = parse.GetValue(text)!;
            string[] all = GuardedFile.ReadAllLines(textPath, GuardedFile.TextCorpusBytes).Select(l => l.Trim()).Where(l => l.Length > 0).Take(lineCount + calibCount).ToArray();
            if (all.Length < lineCount + 1) throw new ArgumentException($"{textPath} has {all.Length} non-empty lines; --lines {lineCount} needs more.");
            string[] sentences = all[..lineCount], calibration = all[lineCount..];
            int[][] tokens = sentences.Select(fp32.Tokenize).ToArray();
            double[] betas = ParseRatios(parse.GetValue(ratios)!), quantizedBetas = ParseRatios(parse.GetValue(quantizedRatios)!);
            double defaultAlpha = parse.GetValue(smoothAlpha);
            Scheme[] schemes = parse.GetValue(configs)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(entry => Scheme.Parse(entry, defaultAlpha)).ToArray();
            int start = parse.GetValue(startLayer);
            var variants = new List<Variant>();
            foreach (Scheme scheme in schemes)
            {
                bool quantizes = scheme.Quantizes;
                if (quantizes) variants.Add(new Variant(scheme, "none", 0, TokenScoring.StartTokenAttention, PruningDirection.Lowest));
                foreach (double beta in quantizes ? quantizedBetas : betas)
                {
                    variants.Add(new Variant(scheme, "[CLS] attention, lowest", beta, TokenScoring.StartTokenAttention, PruningDirection.Lowest));
                    if (quantizes) continue;
                    variants.Add(new Variant(scheme, "random (control)", beta, TokenScoring.Random, PruningDirection.Lowest));
                    variants.Add(new Variant(scheme, "[CLS] attention, highest (control)", beta, TokenScoring.StartTokenAttention, PruningDirection.Highest));
                }
            }

            var report = new Report(parse.GetValue(output), textPath, sentences.Length, calibration.Length, fp32.MaxTokens, tokens, start, workers);
            var clock = Stopwatch.StartNew();
            var maxima = new ActivationChannelMaxima();
            EncoderContext observed = fp32.Model.CreateContext();
            observed.Observer = maxima;
            foreach (string sentence in calibration) observed.Encode(fp32.Tokenize(sentence));
            report.Outliers = maxima;
            (float[][] reference, _) = EmbedAll(fp32.Model, tokens, workers, cancel);
            Console.Error.WriteLine($"FP32 reference: {sentences.Length} sentences in {clock.Elapsed.TotalSeconds:F1}s");
            report.Add(new Variant(new Scheme(QuantizationConfig.Parse("FP32"), 0), "none", 0, TokenScoring.StartTokenAttention, PruningDirection.Lowest),
                EmbeddingComparison.Compare(reference, reference), 1, clock.Elapsed.TotalSeconds);
            Scheme? current = null;
            EncoderModel? quantized = null;
            foreach (Variant v in variants)
            {
                cancel.ThrowIfCancellationRequested();
                if (!ReferenceEquals(current, v.Scheme))
                {
                    clock.Restart();
                    quantized = v.Scheme.Quantizes ? EncoderModelOptions.Quantize(fp32, v.Scheme.Config, calibration, cancel, v.Scheme.SmoothAlpha).Model : fp32.Model;
                    current = v.Scheme;
                    if (v.Scheme.Config.QuantizesWeights) Console.Error.WriteLine($"{v.Scheme.Label}: quantized in {clock.Elapsed.TotalSeconds:F1}s");
                }
                RuntimeOptions runtime = quantized!.Options with
                {
                    Pruning = v.Beta > 0 ? WithDirection(TokenPruningSchedule.Progressive(fp32.Model.Config.NumLayers, start, v.Beta), v.Direction) : null,
                };
                EncoderModel run = quantized.With(runtime, v.Scoring, scoringSeed: 1);
                clock.Restart();
                (float[][] embeddings, double kept) = EmbedAll(run, tokens, workers, cancel);
                EmbeddingAgreement agreement = EmbeddingComparison.Compare(embeddings, reference);
                report.Add(v, agreement, kept, clock.Elapsed.TotalSeconds);
                Console.Error.WriteLine($"{v.Scheme.Label} pruning={v.Pruning} β={v.Beta}: mean cos {agreement.MeanCosine:F6}, min {agreement.MinCosine:F6}, 10-NN overlap {agreement.NeighbourOverlap:F4}, kept {kept:P1} ({clock.Elapsed.TotalSeconds:F1}s)");
                report.Write();
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static double[] ParseRatios(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    private static TokenPruningSchedule WithDirection(TokenPruningSchedule schedule, PruningDirection direction) =>
        new(schedule.Ratios, schedule.LowBitRatios) { Direction = direction };

    /// <summary>Embeddings of every sentence (sentences spread over workers, single-threaded kernels) and the mean fraction of tokens kept.</summary>
    private static (float[][] Embeddings, double Kept) EmbedAll(EncoderModel model, int[][] tokens, int workers, CancellationToken cancel)
    {
        var embeddings = new float[tokens.Length][];
        var kept = new double[tokens.Length];
        Parallel.For(0, tokens.Length, new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = cancel },
            model.CreateContext,
            (i, _, context) =>
            {
                embeddings[i] = context.Embed(tokens[i]);
                kept[i] = (double)context.SurvivingTokenIndices.Count / tokens[i].Length;
                return context;
            },
            _ => { });
        return (embeddings, kept.Average());
    }

    /// <summary>The Markdown report, rewritten after every row.</summary>
    private sealed class Report(string? path, string textPath, int sentences, int calibration, int maxTokens, int[][] tokens, int startLayer, int workers)
    {
        private readonly List<string> _rows = [];

        public ActivationChannelMaxima? Outliers { get; set; }

        public void Add(Variant v, EmbeddingAgreement a, double kept, double seconds) =>
            _rows.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {v.Scheme.Label} | {v.Pruning} | {(v.Beta > 0 ? v.Beta.ToString("0.##", CultureInfo.InvariantCulture) : "–")} | {kept:P1} | {a.MeanCosine:F6} | {a.MinCosine:F6} | {a.NeighbourOverlap:F4} | {seconds:F1} |"));

        public void Write()
        {
            if (path is null) return;
            var md = new StringBuilder();
            md.AppendLine(CultureInfo.InvariantCulture, $"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} processors ({workers} workers), text `{Path.GetFileName(textPath)}`: {sentences} sentences (first non-empty lines), "
                + $"{tokens.Sum(t => t.Length)} tokens (mean {tokens.Average(t => t.Length):F1}, each truncated to {maxTokens} with [CLS] and [SEP]); GPTQ calibrated on the next {calibration} lines. "
                + $"Pruning: progressive schedule over layers {startLayer}–5 removing a fraction β of the tokens in all (TokenPruningSchedule.Progressive), mean pooling over the survivors.");
            md.AppendLine();
            md.AppendLine("| scheme | pruning | β | tokens kept | mean cos | min cos | 10-NN overlap | seconds |");
            md.AppendLine("|---|---|---|---|---|---|---|---|");
            foreach (string row in _rows) md.AppendLine(row);
            if (Outliers is not null)
            {
                md.AppendLine();
                md.AppendLine("Activation outliers (FP32, calibration lines): per layer and linear input, the largest per-channel max |x|, its channel, and its ratio to the median channel's max |x|.");
                md.AppendLine();
                md.AppendLine("| layer | input | top channel | max \\|x\\| | median channel max | ratio | 2nd channel (max) |");
                md.AppendLine("|---|---|---|---|---|---|---|");
                foreach (var ((layer, slot), max) in Outliers.Maxima.OrderBy(e => e.Key.Layer).ThenBy(e => e.Key.Slot))
                {
                    int[] order = Enumerable.Range(0, max.Length).OrderByDescending(c => max[c]).ToArray();
                    float median = max.OrderBy(x => x).ElementAt(max.Length / 2);
                    md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {layer} | {slot} | {order[0]} | {max[order[0]]:F2} | {median:F2} | {max[order[0]] / median:F1} | {order[1]} ({max[order[1]]:F2}) |"));
                }
            }
            File.WriteAllText(path, md.ToString());
        }
    }
}
