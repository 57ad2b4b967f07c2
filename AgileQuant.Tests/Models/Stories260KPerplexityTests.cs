using System.Globalization;
using System.Text.RegularExpressions;
using AgileQuant.Cli.Commands;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;

namespace AgileQuant.Tests.Models;

/// <summary>
/// stories260K perplexity on the first 1,000 TinyStories validation stories, against the figures llama2.c's
/// own forward pass gives (../shared/assets/README.md), and the quantized configurations' TinyStories perplexities
/// published in docs/accuracy.md. Needs ../shared.
/// </summary>
[TestFixture]
public class Stories260KPerplexityTests
{
    private static LoadedModel Loaded() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"),
        new ModelLoadOptions());

    private static IReadOnlyList<IReadOnlyList<int>> Stories(LoadedModel loaded)
    {
        string text = File.ReadAllText(SharedAssets.Require("assets/text/tinystories/tinystories_valid_first1000.txt"));
        return TextCorpus.SplitDocuments(text, "<|endoftext|>").Select(s => (IReadOnlyList<int>)loaded.Tokenizer!.EncodeToIds(s)).ToArray();
    }

    [TestCase(PerplexityProtocol.Document, 369_992, 4.542412)]
    [TestCase(PerplexityProtocol.Stream, 389_573, 4.738295)]
    public void MatchesLlama2cReference(PerplexityProtocol protocol, long scoredTokens, double perplexity)
    {
        LoadedModel loaded = Loaded();
        IReadOnlyList<IReadOnlyList<int>> stories = Stories(loaded);
        Assert.That(stories, Has.Count.EqualTo(1000));
        PerplexityResult result = PerplexityEvaluator.Evaluate(loaded.Model, stories, protocol, 512, parallelism: Environment.ProcessorCount);
        Assert.That(result.ScoredTokens, Is.EqualTo(scoredTokens));
        Assert.That(result.Perplexity, Is.EqualTo(perplexity).Within(0.0005));
    }

    /// <summary>
    /// docs/accuracy.md's main table, TinyStories column, read from the document (written by <c>agilequant accuracy</c>,
    /// its reproduce line): the configuration built as that command builds it (GPTQ and TRIP calibrated on stories 1–100,
    /// each cut to the context) and scored per document on stories 101–1000, within 1e-4 relative of the published figure,
    /// on the kernel family the table names (its "Kernel:" line).
    /// </summary>
    /// <remarks>
    /// Deterministic: a given kernel family gives the same perplexity on every run (documents are scored independently
    /// and summed in order; the integer kernels' int32 sums are exact). Across families it need not be: a family that sums
    /// floats in another order (FP32 linears, norms, attention, the scale epilogues) changes last bits, and every rounding
    /// downstream amplifies them: an 8-bit activation code that tips over a rounding boundary, and, for GPTQ and TRIP, the
    /// calibration pass, whose activations decide GPTQ's sequential rounding of each weight and TRIP's static scales.
    /// Measured (docs/accuracy.md, the note on the re-measured column): the changes since the table's first version, FP32
    /// unchanged to 4 decimals (W8A8's move bisected to attention rewrites that changed summation orders), moved W8A8 by
    /// 6e-5, W4A8-TRIP by 3e-4 and W4A8-GPTQ by 5e-4 relative. So the figures are asserted on the family the table was
    /// measured with, and the test is ignored, with that reason, on others: on this machine with DOTNET_EnableAVX512=0 (AVX2
    /// kernels and 256-bit vectors in the runtime's own vector code) W8A8 came out −1.4e-4, W4A8-TRIP +1.5e-4 and
    /// W4A8-GPTQ +1.1e-3 relative from the table. (With <c>--kernel avx2</c> alone, the runtime still on 512-bit vectors,
    /// W4A8-GPTQ equals the avx512 kernels' figure to all digits and W8A8 to the 7 printed.) The figures carry 4 decimals (1e-5 of
    /// a perplexity near 5), inside 1e-4. Configurations: the cheap ones that cover each activation path, W8A8 (per-token
    /// 8-bit, per-row int8 weights), W4A8-GPTQ (packed int4 after GPTQ) and W4A8-TRIP (static scales); W4A4 and the MIXED
    /// schemes add about 30 s of CI each, and the WikiText-2 column (807,702 tokens a row) is not run here.
    /// </remarks>
    [TestCase("W8A8")]
    [TestCase("W4A8-GPTQ")]
    [TestCase("W4A8-TRIP")]
    public void AccuracyTable_TinyStoriesPerplexity_MatchesDocsAccuracyMd(string configName)
    {
        (double published, long scoredTokens, string kernel) = PublishedTinyStories(configName);
        LoadedModel loaded = Loaded();
        string family = loaded.Model.Kernel.Name;
        // the table's kernels, and 512-bit vectors for the runtime's own vector code (norms, softmax, attention) as where it was measured
        if (family != kernel || (kernel == "avx512" && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated))
            Assert.Ignore($"docs/accuracy.md was measured with the {kernel} kernels (512-bit vectors accelerated); this run selects {family} (512-bit vectors accelerated: {System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}), whose float summation order moves the figures (see the remarks)");
        IReadOnlyList<IReadOnlyList<int>> stories = Stories(loaded);
        int context = loaded.Model.ContextLength;
        const int calibrationStories = 100; // the accuracy command's --calib-docs default, which the doc's reproduce line keeps
        int[][] calibration = stories.Take(calibrationStories).Select(d => d.Take(context).ToArray()).ToArray();
        QuantizationConfig config = QuantizationConfig.Parse(configName);
        TransformerModel candidate = new QuantizationRun(config, 0, calibration, calibrationStories).Build(loaded.Model, CancellationToken.None);
        PerplexityResult result = PerplexityEvaluator.Evaluate(candidate, stories.Skip(calibrationStories).ToArray(), PerplexityProtocol.Document, context,
            parallelism: Environment.ProcessorCount);
        TestContext.Out.WriteLine($"{configName} ({candidate.Kernel.Name}): TinyStories PPL {result.Perplexity:F6} over {result.ScoredTokens:N0} tokens, docs/accuracy.md {published:F4} (relative {result.Perplexity / published - 1:+0.0E+0;-0.0E+0})");
        Assert.That(result.ScoredTokens, Is.EqualTo(scoredTokens), "the table's scored tokens");
        Assert.That(result.Perplexity, Is.EqualTo(published).Within(1e-4 * published), $"{configName}: docs/accuracy.md TinyStories perplexity");
    }

    // The TinyStories perplexity of `config`'s row in docs/accuracy.md's main table, that table's scored-token count and kernel.
    private static (double Perplexity, long ScoredTokens, string Kernel) PublishedTinyStories(string config)
    {
        string[] lines = File.ReadAllLines(SharedAssets.InRepo("docs/accuracy.md"));
        string protocol = lines.First(l => l.StartsWith("- **TinyStories**", StringComparison.Ordinal));
        Assert.That(protocol, Does.Contain("stories 1–100; every configuration is evaluated on stories 101–1000"), "the protocol this test replays");
        long tokens = long.Parse(Regex.Match(protocol, @"\(([\d,]+) scored tokens\)").Groups[1].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
        string kernel = Regex.Match(lines.First(l => l.StartsWith("Model: ", StringComparison.Ordinal)), @"Kernel: ([\w-]+)\.").Groups[1].Value;
        // the main table ends at its reproduce line; the KV cache section's rows come after it
        string row = lines.TakeWhile(l => !l.StartsWith("Reproduce:", StringComparison.Ordinal)).Single(l => l.StartsWith($"| {config} |", StringComparison.Ordinal));
        string[] cells = row.Split('|', StringSplitOptions.TrimEntries);
        return (double.Parse(cells[3], CultureInfo.InvariantCulture), tokens, kernel);
    }
}
