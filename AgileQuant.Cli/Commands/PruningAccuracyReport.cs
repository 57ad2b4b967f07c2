using System.Globalization;
using System.Text;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>accuracy --prune-ratios</c>: each configuration quantized once, then evaluated without pruning and with a
/// progressive pruning schedule per ratio β, on both protocols. Each pruned row is compared with FP32 twice: FP32 with
/// the same schedule (the quantization error on the tokens both keep) and dense FP32 (quantization + pruning error).
/// </summary>
internal sealed class PruningAccuracyReport(LoadedModel loaded, int startLayer, int calibDocs, int storyCount, int wikiWindow, int wikiTokens, string reproduce)
{
    /// <summary>One measurement on one text: the candidate's perplexity over its scored (surviving) tokens and its distance from FP32.</summary>
    internal sealed record Cell(DistributionComparisonResult SamePruning, DistributionComparisonResult Dense);

    /// <summary>One table row: a configuration at one pruning ratio.</summary>
    internal sealed record Row(string Config, double Beta, Cell Stories, Cell? Wiki);

    private readonly List<Row> _rows = [];

    /// <summary>The progressive schedule for β (null for β = 0).</summary>
    public TokenPruningSchedule? Schedule(double beta) =>
        beta > 0 ? TokenPruningSchedule.Progressive(loaded.Model.Config.NumLayers, startLayer, beta) : null;

    /// <summary>Evaluates <paramref name="candidate"/> (pruned or not) against FP32 with the same schedule and dense FP32.</summary>
    public static Cell Measure(TransformerModel fp32, TransformerModel candidate, TokenPruningSchedule? schedule, IReadOnlyList<IReadOnlyList<int>> documents,
        PerplexityProtocol protocol, int context, string label, CancellationToken cancel)
    {
        using var scoring = new ProgressLine($"scoring {label}");
        var progress = new Progress<EvaluationProgress>(p => scoring.Report(p.SequencesDone, p.SequencesTotal, $"sequences, {p.ScoredTokens:N0} tokens"));
        TransformerModel fp32Pruned = schedule is null ? fp32 : new TransformerModel(fp32.Weights, fp32.Kernel, fp32.Options with { Pruning = schedule });
        DistributionComparisonResult same = DistributionComparison.Compare(fp32Pruned, candidate, documents, protocol, context, Environment.ProcessorCount, progress, cancel);
        DistributionComparisonResult dense = schedule is null ? same
            : DistributionComparison.Compare(fp32, candidate, documents, protocol, context, Environment.ProcessorCount, progress, cancel);
        return new Cell(same, dense);
    }

    public void Add(Row row) => _rows.Add(row);

    public string Render()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        TransformerConfig c = loaded.Model.Config;
        sb.AppendLine($"# Token pruning and quantization accuracy: {Path.GetFileName(loaded.SourcePath)}");
        sb.AppendLine();
        sb.AppendLine($"Model: {c.Family}, {c.NumLayers} layers, dim {c.HiddenSize}, {c.NumHeads} heads, vocab {c.VocabSize}. Kernel: {loaded.Model.Kernel.Name}.");
        sb.AppendLine();
        sb.AppendLine($"- Pruning: progressive schedule from layer {startLayer} to the last (docs/method.md §3: per-layer γ = 1 − (1−β)^(1/m), so 1−β of the tokens reach the end), lowest start-token attention pruned, start and last tokens kept, positions renumbered. β = 0: no pruning. A mixed scheme's 25% lower-bit tokens become the schedule's per-layer lower-bit ratio when pruning (inherited across layers).");
        sb.AppendLine($"- **TinyStories** per-document protocol (BOS + story, cut at {c.MaxSequenceLength}): GPTQ/TRIP calibrate on stories 1–{calibDocs}, evaluation on the next {storyCount}.");
        if (wikiTokens > 0)
            sb.AppendLine($"- **WikiText-2** stream protocol (`wiki.test.raw` tokenized once, non-overlapping {wikiWindow}-token windows), limited to the first {wikiTokens:N0} tokens to fit the time on this shared machine.");
        sb.AppendLine("- PPL and tokens: the configuration's perplexity over the positions it scores (the surviving ones when pruning) and their count — a pruned perplexity is not comparable with a dense one.");
        sb.AppendLine("- KL q: mean KL(P_FP32 ‖ P_config) in nats with FP32 run under the same pruning schedule, over positions both keep (the quantization error); FP32 PPL: FP32's perplexity on those positions. KL total: against dense FP32 on the surviving positions (quantization + pruning error).");
        sb.AppendLine();
        bool wiki = _rows.Count > 0 && _rows[0].Wiki is not null;
        string head = "| PPL | tokens | FP32 PPL | KL q | KL total |";
        sb.AppendLine("| config | β " + head.Replace("| ", "| TS ") + (wiki ? head.Replace("| ", "| Wiki ")[1..] : ""));
        sb.AppendLine("| --- | ---: |" + string.Concat(Enumerable.Repeat(" ---: |", wiki ? 10 : 5)));
        foreach (Row r in _rows)
        {
            string Cells(Cell e) => string.Format(inv, " {0:F4} | {1:N0} | {2:F4} | {3:F4} | {4:F4} |",
                e.SamePruning.Candidate.Perplexity, e.Dense.Candidate.ScoredTokens, e.SamePruning.Reference.Perplexity, e.SamePruning.MeanKlDivergence, e.Dense.MeanKlDivergence);
            sb.Append(inv, $"| {r.Config} | {r.Beta:0.0} |").Append(Cells(r.Stories));
            if (r.Wiki is Cell w) sb.Append(Cells(w));
            sb.AppendLine();
        }
        sb.AppendLine();
        sb.AppendLine(Verdict());
        sb.AppendLine();
        sb.AppendLine($"Reproduce: `{reproduce}`");
        return sb.ToString();
    }

    /// <summary>Whether pruning lowered the quantization error (KL q below the same configuration's β = 0 KL), per configuration and text.</summary>
    private string Verdict()
    {
        var sb = new StringBuilder("**Did pruning lower the quantization error (the paper's claim)?** ");
        var inv = CultureInfo.InvariantCulture;
        foreach (IGrouping<string, Row> config in _rows.GroupBy(r => r.Config))
        {
            Row? dense = config.FirstOrDefault(r => r.Beta == 0);
            Row[] pruned = config.Where(r => r.Beta > 0).ToArray();
            if (dense is null || pruned.Length == 0) continue;
            string Text(Func<Row, Cell?> pick, string name)
            {
                double baseKl = pick(dense)!.SamePruning.MeanKlDivergence;
                int lower = pruned.Count(r => pick(r)!.SamePruning.MeanKlDivergence < baseKl);
                return string.Format(inv, "{0}: KL q below the dense {1:F4} at {2} of {3} ratios ({4})", name, baseKl, lower, pruned.Length,
                    string.Join(", ", pruned.Select(r => string.Format(inv, "β={0:0.0}: {1:F4}", r.Beta, pick(r)!.SamePruning.MeanKlDivergence))));
            }
            sb.Append(inv, $"{config.Key} — ").Append(Text(r => r.Stories, "TinyStories"));
            if (dense.Wiki is not null) sb.Append("; ").Append(Text(r => r.Wiki, "WikiText-2"));
            sb.Append(". ");
        }
        return sb.ToString().TrimEnd();
    }
}
