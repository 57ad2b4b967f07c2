using System.Globalization;
using System.Text;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>accuracy --kv-types</c>: each configuration with its exact KV cache and with each KV type asked for, on both
/// protocols: perplexity, its change over the same configuration with the exact cache (what the KV type adds on top of
/// the weight scheme) and KL / top-1 against FP32 with the exact cache. Written as a section of docs/accuracy.md, between
/// markers, so that the main table and this one can be regenerated apart.
/// </summary>
internal sealed class KvCacheAccuracyReport(LoadedModel loaded, int calibDocs, int storyCount, int wikiWindow, string reproduce)
{
    /// <summary>The first line of the section in the markdown file.</summary>
    public const string Begin = "<!-- KV cache section: written by `agilequant accuracy --kv-types` -->";

    /// <summary>The line after the section.</summary>
    public const string End = "<!-- end of the KV cache section -->";

    /// <summary>One row: a configuration with one KV type (null: exact).</summary>
    internal sealed record Row(string Config, KvCacheType? Type, double BytesPerToken, EvaluationReport Stories, EvaluationReport? Wiki);

    private readonly List<Row> _rows = [];

    public void Add(Row row) => _rows.Add(row);

    /// <summary>The section, markers included.</summary>
    public string Render()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        TransformerConfig c = loaded.Model.Config;
        bool wiki = _rows.Count > 0 && _rows[0].Wiki is not null;
        string Scored(EvaluationReport e) => e.Result.ScoredTokens.ToString("N0", inv);
        sb.AppendLine(Begin);
        sb.AppendLine("## KV cache");
        sb.AppendLine();
        sb.AppendLine($"Each configuration with its exact KV cache (auto: FP32, or the scheme's own 8-bit codes) and stored as each KV type (`--kv-type`). " +
            $"TinyStories stories {calibDocs + 1}–{calibDocs + storyCount} per document ({Scored(_rows[0].Stories)} scored tokens; GPTQ calibrated on stories 1–{calibDocs})" +
            (wiki ? $", WikiText-2 as one stream in {wikiWindow}-token windows ({Scored(_rows[0].Wiki!)} scored tokens)" : "") + ". " +
            "Δ = perplexity change over the same configuration with the exact cache (what the KV type adds on top of the weight scheme; the issue's targets: " +
            "f16 ≤ +0.01%, q8 ≤ +0.1%, q4 ≤ +2%). KL and top-1 against FP32 with the exact cache. KV bytes per token: keys and values of all " +
            $"{c.NumLayers} layers ({c.NumKvHeads} key/value heads of {c.HeadDim}), averaged over a key group. A scheme that rounds the cache to 8 bits " +
            "(the paper's KV rounding) keeps that rounding; the KV type then stores the rounded values.");
        sb.AppendLine();
        sb.AppendLine("| config | KV cache | KV bytes/token | TinyStories PPL | Δ | KL | top-1 |" + (wiki ? " WikiText-2 PPL | Δ | KL | top-1 |" : ""));
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (wiki ? " ---: | ---: | ---: | ---: |" : ""));
        foreach (Row r in _rows)
        {
            Row exact = _rows.First(x => x.Config == r.Config && x.Type is null);
            string Cells(EvaluationReport e, EvaluationReport baseline) => string.Format(inv, " {0:F4} | {1:+0.000;-0.000;0.000}% | {2:F5} | {3:P1} |",
                e.Result.Perplexity, 100 * (e.Result.Perplexity / baseline.Result.Perplexity - 1), e.Kl, e.Top1);
            sb.Append(inv, $"| {r.Config} | {(r.Type is KvCacheType t ? t.ToString().ToLowerInvariant() : "auto (exact)")} | {r.BytesPerToken:N0} |");
            sb.Append(Cells(r.Stories, exact.Stories));
            if (r.Wiki is EvaluationReport w) sb.Append(Cells(w, exact.Wiki!));
            sb.AppendLine();
        }
        sb.AppendLine();
        sb.AppendLine("Keys per channel (q8, q4) against keys per token, and the rotation of 4-bit blocks: test " +
            "`KvCacheContextTests.PerChannelKeysBeatPerTokenKeysOnStories260K` measures them on 60 stories and prints the figures.");
        sb.AppendLine();
        sb.AppendLine($"Reproduce: `{reproduce}`");
        sb.AppendLine(End);
        return sb.ToString();
    }

    /// <summary>Where the section sits in docs/accuracy.md.</summary>
    public static MarkdownSection Section { get; } = new(Begin, End);
}
