using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Tests.Core.Pruning;

/// <summary>Token pruning inside the prefill of stories260K (bundled) and the LLaMA/OPT/BLOOM fixtures (../shared).</summary>
[TestFixture]
public class PrunedInferenceTests
{
    private static readonly Lazy<TransformerWeights> Stories =
        new(() => Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")));

    private static TransformerModel Stories260K(TokenPruningSchedule? schedule) =>
        new(Stories.Value, TestKernels.Default, new RuntimeOptions { Pruning = schedule });

    private static TransformerModel Fixture(string name, TokenPruningSchedule? schedule)
    {
        LoadedModel loaded = ModelLoader.Load(SharedAssets.Require("fixtures/" + name), new ModelLoadOptions());
        return new TransformerModel(loaded.Model.Weights, TestKernels.Default, new RuntimeOptions { Pruning = schedule });
    }

    /// <summary>BOS then <paramref name="count"/> − 1 random ids in [3, vocab), from a fixed seed.</summary>
    internal static int[] RandomTokens(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        int[] tokens = new int[count];
        tokens[0] = 1;
        for (int i = 1; i < count; i++) tokens[i] = random.Next(3, vocab);
        return tokens;
    }

    /// <summary>Tokens left after each layer of a first prefill of n tokens: c −= min(floor(r_l·c), c − 2) (start and last kept).</summary>
    private static int[] ExpectedLayerCounts(TokenPruningSchedule schedule, int layers, int n)
    {
        int[] counts = new int[layers];
        int c = n;
        for (int l = 0; l < layers; l++)
        {
            counts[l] = c; // the layer's cache holds the tokens that reached it
            if (c > 2) c -= Math.Min((int)Math.Floor(schedule.RatioAt(l) * c), c - 2);
        }
        return [.. counts, c];
    }

    [TestCase(PrunedPositions.Renumbered)]
    [TestCase(PrunedPositions.Original)]
    public void AllZeroScheduleReproducesUnprunedLogitsBitForBit(PrunedPositions positions)
    {
        int[] tokens = RandomTokens(64, 512, seed: 1);
        float[] dense = Stories260K(null).CreateContext().Forward(tokens, allLogits: true);
        var zeros = new TokenPruningSchedule(new double[5], new double[5]) { Positions = positions };
        InferenceContext context = Stories260K(zeros).CreateContext();
        float[] pruned = context.Forward(tokens, allLogits: true);
        Assert.That(pruned, Is.EqualTo(dense), "bit for bit");
        Assert.That(context.SurvivingTokenIndices, Is.EqualTo(Enumerable.Range(0, 64)));
        // and the decode step after it
        float[] denseStep = DecodeAfter(Stories260K(null), tokens, 7);
        Assert.That(DecodeAfter(Stories260K(zeros), tokens, 7), Is.EqualTo(denseStep), "decode bit for bit");
    }

    private static float[] DecodeAfter(TransformerModel model, int[] prompt, int next)
    {
        InferenceContext context = model.CreateContext();
        context.Forward(prompt);
        return context.Forward([next]);
    }

    [TestCase(PruningDirection.Lowest, PrunedPositions.Renumbered)]
    [TestCase(PruningDirection.Highest, PrunedPositions.Original)]
    public void EachLayerCachesOnlyTheTokensThatReachedItAndStartAndLastSurvive(PruningDirection direction, PrunedPositions positions)
    {
        var schedule = new TokenPruningSchedule(TokenPruningSchedule.Progressive(5, 1, 0.6).Ratios) { Direction = direction, Positions = positions };
        const int n = 100;
        int[] tokens = RandomTokens(n, 512, seed: 2);
        InferenceContext context = Stories260K(schedule).CreateContext();
        float[] logits = context.Forward(tokens, allLogits: true);
        int[] expected = ExpectedLayerCounts(schedule, 5, n);
        for (int l = 0; l < 5; l++) Assert.That(context.LayerLength(l), Is.EqualTo(expected[l]), $"layer {l}");
        IReadOnlyList<int> survivors = context.SurvivingTokenIndices;
        Assert.That(survivors, Has.Count.EqualTo(expected[5]));
        Assert.That(expected[5], Is.LessThan(n / 2 + 2), "about 1−β = 40% survive");
        Assert.That(survivors[0], Is.EqualTo(0), "start token");
        Assert.That(survivors[^1], Is.EqualTo(n - 1), "last token");
        Assert.That(survivors, Is.Ordered.Ascending.And.Unique);
        Assert.That(logits, Has.Length.EqualTo(expected[5] * 512));
        Assert.That(context.Length, Is.EqualTo(n));
        float[] lastOnly = Stories260K(schedule).CreateContext().Forward(tokens);
        Assert.That(lastOnly, Is.EqualTo(logits.AsSpan((expected[5] - 1) * 512, 512).ToArray()).Within(1e-4f), "the last row is the last token's logits");
    }

    [Test]
    public void PruningOnlyInTheLastLayerLeavesTheSurvivorsLogitsUnchanged()
    {
        // pruned rows leave after the last layer's attention: survivors saw exactly the dense attention, and the
        // MLP, final norm and head act row by row
        int[] tokens = RandomTokens(48, 512, seed: 3);
        float[] dense = Stories260K(null).CreateContext().Forward(tokens, allLogits: true);
        InferenceContext context = Stories260K(new TokenPruningSchedule([0, 0, 0, 0, 0.5])).CreateContext();
        float[] pruned = context.Forward(tokens, allLogits: true);
        Assert.That(context.SurvivingTokenIndices, Has.Count.EqualTo(24));
        for (int k = 0; k < context.SurvivingTokenIndices.Count; k++)
        {
            int i = context.SurvivingTokenIndices[k];
            Assert.That(pruned.AsSpan(k * 512, 512).ToArray(), Is.EqualTo(dense.AsSpan(i * 512, 512).ToArray()).Within(1e-5f), $"token {i}");
        }
    }

    /// <summary>
    /// Decode after a pruned prefill of n tokens must equal the last row of a pruned prefill of the n+1 tokens whenever
    /// both prune the same tokens (attention is causal, so earlier scores agree; the new token is last and never pruned):
    /// this holds only if every layer's cache holds exactly the surviving tokens with the right positions.
    /// </summary>
    /// <remarks>
    /// The precondition fails when the longer prefill prunes token n−1 (no longer the last); the first of a fixed list
    /// of seeds for which it holds is used, so the check stays deterministic.
    /// </remarks>
    private static void AssertDecodeMatchesLongerPrefill(TransformerModel model, int length)
    {
        int[]? sequence = null;
        int n = length - 1;
        for (int seed = 100; seed < 140 && sequence is null; seed++)
        {
            int[] candidate = RandomTokens(length, model.Config.VocabSize, seed);
            InferenceContext shorter = model.CreateContext(), longerTry = model.CreateContext();
            shorter.Forward(candidate.AsSpan(0, n));
            longerTry.Forward(candidate);
            if (longerTry.SurvivingTokenIndices.SequenceEqual(shorter.SurvivingTokenIndices.Append(n))) sequence = candidate;
        }
        Assert.That(sequence, Is.Not.Null, "some seed prunes the same tokens in both prefills");
        InferenceContext prefill = model.CreateContext();
        prefill.Forward(sequence.AsSpan(0, n));
        int[] kept = prefill.SurvivingTokenIndices.ToArray();
        int layers = model.Config.NumLayers;
        int[] lengths = Enumerable.Range(0, layers).Select(prefill.LayerLength).ToArray();
        float[] step = prefill.Forward(sequence.AsSpan(n, 1));
        Assert.That(prefill.SurvivingTokenIndices, Has.Count.EqualTo(1));
        Assert.That(prefill.SurvivingTokenIndices, Is.EqualTo(new[] { 0 }), "decode prunes nothing");
        for (int l = 0; l < layers; l++) Assert.That(prefill.LayerLength(l), Is.EqualTo(lengths[l] + 1), $"decode appends to layer {l}");

        InferenceContext longer = model.CreateContext();
        float[] last = longer.Forward(sequence);
        Assert.That(longer.SurvivingTokenIndices, Is.EqualTo(kept.Append(n)), "precondition: both prefills prune the same tokens");
        Assert.That(step, Is.EqualTo(last).Within(2e-4f));
        Assert.That(lengths[^1], Is.LessThan(n), "the last layer's cache is smaller than the prompt");
    }

    [TestCase(PrunedPositions.Renumbered)]
    [TestCase(PrunedPositions.Original)]
    public void DecodeAfterPrunedPrefillContinuesConsistently(PrunedPositions positions)
    {
        // 40 → layer 1 prunes floor(0.2·40) = 8 (41: 8) → layer 3 prunes floor(0.2·32) = 6 (33: 6)
        var schedule = new TokenPruningSchedule([0, 0.2, 0, 0.2, 0]) { Positions = positions };
        AssertDecodeMatchesLongerPrefill(Stories260K(schedule), 41);
    }

    [Test]
    public void RenumberedAndOriginalPositionsDifferForRope()
    {
        int[] tokens = RandomTokens(40, 512, seed: 5);
        float[] Run(PrunedPositions p) => Stories260K(new TokenPruningSchedule([0, 0.3, 0, 0, 0]) { Positions = p }).CreateContext().Forward(tokens);
        Assert.That(Run(PrunedPositions.Renumbered), Is.Not.EqualTo(Run(PrunedPositions.Original)));
    }

    [Test]
    public void PerplexityScoresOnlySurvivingPositions()
    {
        int[][] documents = [RandomTokens(60, 512, seed: 6), RandomTokens(33, 512, seed: 7)];
        var schedule = TokenPruningSchedule.Progressive(5, 2, 0.4);
        PerplexityResult dense = PerplexityEvaluator.Evaluate(Stories260K(null), documents, PerplexityProtocol.Document, 512);
        PerplexityResult pruned = PerplexityEvaluator.Evaluate(Stories260K(schedule), documents, PerplexityProtocol.Document, 512);
        Assert.That(dense.ScoredTokens, Is.EqualTo(59 + 32));
        // survivors minus the last token of each sequence, which predicts nothing
        long expected = documents.Sum(d => ExpectedLayerCounts(schedule, 5, d.Length)[5] - 1);
        Assert.That(pruned.ScoredTokens, Is.EqualTo(expected));
        Assert.That(pruned.ScoredTokens, Is.LessThan(dense.ScoredTokens));
        // The reference: the same pruned forward pass scored by hand, each surviving position t but the last charged
        // −log softmax(logits_t)[token t+1] in double precision, averaged: perplexity as defined, computed apart from PerplexityEvaluator.
        double nll = 0;
        long scored = 0;
        foreach (int[] document in documents)
        {
            InferenceContext context = Stories260K(schedule).CreateContext();
            float[] logits = context.Forward(document, allLogits: true); // (survivors, vocab)
            for (int k = 0; k < context.SurvivingTokenIndices.Count; k++)
            {
                int t = context.SurvivingTokenIndices[k];
                if (t == document.Length - 1) continue;
                ReadOnlySpan<float> row = logits.AsSpan(k * 512, 512);
                double max = double.NegativeInfinity, sum = 0;
                foreach (float v in row) max = Math.Max(max, v);
                foreach (float v in row) sum += Math.Exp(v - max);
                nll += max + Math.Log(sum) - row[document[t + 1]];
                scored++;
            }
        }
        Assert.That(scored, Is.EqualTo(pruned.ScoredTokens));
        Assert.That(pruned.MeanNll, Is.EqualTo(nll / scored).Within(1e-6 * (nll / scored)), "mean NLL of the surviving positions, scored by hand");
        Assert.That(pruned.Perplexity, Is.EqualTo(Math.Exp(nll / scored)).Within(1e-6 * Math.Exp(nll / scored)));
    }

    [Test]
    public void LowerBitRatioAndScheduleAreExclusive()
    {
        Assert.Throws<ArgumentException>(() => _ = new TransformerModel(Stories.Value, TestKernels.Default,
            new RuntimeOptions { LowBitTokenRatio = 0.2, Pruning = new TokenPruningSchedule([0.1]) }));
    }

    [TestCase("llama_tiny_gqa")]
    [TestCase("opt_tiny_125m_style")]
    [TestCase("bloom_tiny")]
    public void FixtureRunsKeepsTheExpectedTokenCountAndDecodesConsistently(string fixture)
    {
        TransformerModel probe = Fixture(fixture, null);
        int layers = probe.Config.NumLayers, vocab = probe.Config.VocabSize;
        var schedule = TokenPruningSchedule.Progressive(layers, 0, 0.5);
        TransformerModel model = Fixture(fixture, schedule);
        int[] tokens = RandomTokens(41, vocab, seed: 8);
        InferenceContext context = model.CreateContext();
        float[] logits = context.Forward(tokens.AsSpan(0, 40), allLogits: true);
        int[] expected = ExpectedLayerCounts(schedule, layers, 40);
        Assert.That(context.SurvivingTokenIndices, Has.Count.EqualTo(expected[layers]));
        for (int l = 0; l < layers; l++) Assert.That(context.LayerLength(l), Is.EqualTo(expected[l]), $"layer {l}");
        Assert.That(logits, Has.Length.EqualTo(expected[layers] * vocab));
        Assert.That(logits.All(float.IsFinite), Is.True);
        // 40 → first layer prunes floor(0.2·40) = 8 (41: 8) → last layer floor(0.2·32) = 6 (33: 6)
        double[] ratios = new double[layers];
        ratios[0] = ratios[layers - 1] = 0.2;
        foreach (PrunedPositions positions in new[] { PrunedPositions.Renumbered, PrunedPositions.Original })
            AssertDecodeMatchesLongerPrefill(Fixture(fixture, new TokenPruningSchedule(ratios) { Positions = positions }), 41);
    }

    [Test]
    public void OptLearnedPositionsMakeRenumberedEqualOriginal()
    {
        // OPT adds its learned positions once at the embedding, before any pruning
        TransformerModel probe = Fixture("opt_tiny_125m_style", null);
        int[] tokens = RandomTokens(30, probe.Config.VocabSize, seed: 9);
        double[] ratios = TokenPruningSchedule.Progressive(probe.Config.NumLayers, 0, 0.4).Ratios.ToArray();
        float[] Run(PrunedPositions p) => Fixture("opt_tiny_125m_style", new TokenPruningSchedule(ratios) { Positions = p }).CreateContext().Forward(tokens, allLogits: true);
        Assert.That(Run(PrunedPositions.Renumbered), Is.EqualTo(Run(PrunedPositions.Original)));
    }

    [TestCase("llama_tiny_gqa")]
    [TestCase("bloom_tiny")]
    public void RopeAndAlibiSeeThePositionSetting(string fixture)
    {
        TransformerModel probe = Fixture(fixture, null);
        int[] tokens = RandomTokens(30, probe.Config.VocabSize, seed: 10);
        double[] ratios = TokenPruningSchedule.Progressive(probe.Config.NumLayers, 0, 0.4).Ratios.ToArray();
        float[] Run(PrunedPositions p) => Fixture(fixture, new TokenPruningSchedule(ratios) { Positions = p }).CreateContext().Forward(tokens);
        Assert.That(Run(PrunedPositions.Renumbered), Is.Not.EqualTo(Run(PrunedPositions.Original)));
    }
}
