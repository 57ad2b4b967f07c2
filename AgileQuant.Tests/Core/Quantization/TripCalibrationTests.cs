using AgileQuant.Core;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Trip;
using AgileQuant.Models;
using AgileQuant.Tests.Core.Pruning;

namespace AgileQuant.Tests.Core.Quantization;

/// <summary>TRIP (docs/method.md §4): folded outlier factors, static scales from calibration, the fused pass in the runtime.</summary>
[TestFixture]
public class TripCalibrationTests
{
    private static readonly Lazy<LoadedModel> Bundled = new(() =>
        ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions()));

    private static int[][] Calibration(int skip, int take) =>
        TextCorpus.SplitDocuments(File.ReadAllText(SharedAssets.InRepo("assets/text/tinystories_valid_first100.txt")), "<|endoftext|>")
            .Skip(skip).Take(take).Select(s => Bundled.Value.Tokenizer!.EncodeToIds(s).ToArray()).ToArray();

    /// <summary>W4A8-TRIP with round-to-nearest weights (no GPTQ), so the tests stay quick.</summary>
    private static QuantizationConfig TripRtn(string name = "W4A8-TRIP") =>
        QuantizationConfig.Parse(name) with { Rounding = WeightRounding.RoundToNearest, ActOrder = false };

    [Test]
    public void FoldingTheChosenFactorsLeavesTheFp32LogitsUnchanged()
    {
        TransformerModel fp32 = Bundled.Value.Model;
        ChannelRangeObserver ranges = TripCalibration.ObserveRanges(fp32, Calibration(0, 10));
        LayerChannelFactors[] factors = TripCalibration.ChooseFactors(fp32.Config, ranges);
        int outliers = factors.Sum(f => new[] { f.QueryKeyValue, f.AttentionOutput, f.MlpInput, f.MlpDown }.Sum(a => a?.Count(x => x != 1f) ?? 0));
        TestContext.Out.WriteLine($"stories260K: {outliers} outlier channels get a factor > 1");
        Assert.That(outliers, Is.GreaterThan(0), "the rule finds outlier channels, so the check below folds something");
        Assert.That(factors.SelectMany(f => new[] { f.QueryKeyValue!, f.AttentionOutput!, f.MlpInput!, f.MlpDown! }).SelectMany(a => a),
            Has.All.Matches<float>(a => a >= 1 && a <= 16 && float.IsPow2((int)a)), "power-of-two factors 1..2^K");
        TransformerModel folded = TripCalibration.Fold(fp32, factors);
        int[] tokens = PrunedInferenceTests.RandomTokens(40, fp32.Config.VocabSize, seed: 5);
        float[] before = fp32.CreateContext().Forward(tokens, allLogits: true);
        float[] after = folded.CreateContext().Forward(tokens, allLogits: true);
        Assert.That(after, Is.EqualTo(before).Within(1e-4f));
    }

    [TestCase("llama_tiny_gqa")]
    [TestCase("opt_tiny_125m_style")]
    [TestCase("bloom_tiny")]
    public void FoldingFactorsIntoTheFixturesLeavesTheFp32LogitsUnchanged(string fixture)
    {
        TransformerModel fp32 = ModelLoader.Load(SharedAssets.Require("fixtures/" + fixture), new ModelLoadOptions()).Model;
        TransformerConfig c = fp32.Config;
        var random = new Random(9);
        float[] Factors(int width) => Enumerable.Range(0, width).Select(_ => MathF.ScaleB(1f, random.Next(0, 5))).ToArray();
        // every point the architecture can fold: norms only pre-norm, down_proj only for SwiGLU/ReLU (GQA: per KV channel)
        LayerChannelFactors[] factors = Enumerable.Range(0, c.NumLayers).Select(_ => new LayerChannelFactors(
            c.PreNorm ? Factors(c.HiddenSize) : null, Factors(c.KvDim), c.PreNorm ? Factors(c.HiddenSize) : null,
            c.Mlp is MlpKind.SwiGlu or MlpKind.Relu ? Factors(c.IntermediateSize) : null)).ToArray();
        int[] tokens = PrunedInferenceTests.RandomTokens(12, c.VocabSize, seed: 6);
        float[] before = fp32.CreateContext().Forward(tokens, allLogits: true);
        float[] after = TripCalibration.Fold(fp32, factors).CreateContext().Forward(tokens, allLogits: true);
        Assert.That(after, Is.EqualTo(before).Within(1e-4f));
    }

    /// <summary>Records max |x| of every (layer, slot) input: an observer independent of <see cref="ChannelRangeObserver"/>.</summary>
    private sealed class RangeRecorder : ILinearInputObserver
    {
        public readonly Dictionary<(int, LinearSlot), float> MaxMagnitude = [];

        public void Observe(int layer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
        {
            float max = MaxMagnitude.GetValueOrDefault((layer, slot));
            foreach (float v in input) max = Math.Max(max, Math.Abs(v));
            MaxMagnitude[(layer, slot)] = max;
        }
    }

    [Test]
    public void StaticScalesAreTheCalibrationRangeOfTheFoldedInputs()
    {
        TransformerModel fp32 = Bundled.Value.Model;
        int[][] calibration = Calibration(0, 8);
        TransformerModel trip = ModelQuantizer.Quantize(fp32, TripRtn(), new ModelQuantizationOptions { Calibration = calibration });

        TransformerModel folded = TripCalibration.Fold(fp32, TripCalibration.ChooseFactors(fp32.Config, TripCalibration.ObserveRanges(fp32, calibration)));
        var recorder = new RangeRecorder();
        InferenceContext context = folded.CreateContext();
        context.Observer = recorder;
        foreach (int[] sequence in calibration)
        {
            context.Reset();
            context.Forward(sequence.AsSpan(0, Math.Min(sequence.Length, fp32.Config.MaxSequenceLength)));
        }
        for (int l = 0; l < fp32.Config.NumLayers; l++)
        {
            LayerWeights w = trip.Weights.Layers[l];
            foreach ((LinearSlot slot, LinearLayer[] linears) in new[]
            {
                (LinearSlot.QueryKeyValue, new[] { w.Query, w.Key, w.Value }), (LinearSlot.AttentionOutput, new[] { w.Output }),
                (LinearSlot.MlpInput, new[] { w.Gate!, w.Up }), (LinearSlot.MlpDown, new[] { w.Down }),
            })
            {
                float range = recorder.MaxMagnitude[(l, slot)];
                foreach (LinearLayer linear in linears)
                {
                    Assert.That(linear.StaticScales, Is.Not.Null);
                    Assert.That(linear.StaticScales!.Value.EightBit, Is.EqualTo(range / 127).Within(1e-6).Percent, $"layer {l} {slot} s8");
                    Assert.That(linear.StaticScales!.Value.FourBit, Is.EqualTo(range / 7).Within(1e-6).Percent, $"layer {l} {slot} s4");
                }
            }
        }
        // other calibration text, other scales
        TransformerModel other = ModelQuantizer.Quantize(fp32, TripRtn(), new ModelQuantizationOptions { Calibration = Calibration(20, 2) });
        Assert.That(other.Weights.Layers[0].Down.StaticScales, Is.Not.EqualTo(trip.Weights.Layers[0].Down.StaticScales));
    }

    [Test]
    public void TripNeedsCalibrationText() =>
        Assert.Throws<AgileQuantException>(() => ModelQuantizer.Quantize(Bundled.Value.Model, TripRtn()));

    [Test]
    public void TripStaysCloseToFp32AndTheMixedSchemeCostsMore()
    {
        TransformerModel fp32 = Bundled.Value.Model;
        var options = new ModelQuantizationOptions { Calibration = Calibration(0, 10) };
        IReadOnlyList<IReadOnlyList<int>> eval = Calibration(60, 6);
        DistributionComparisonResult Compare(string name) =>
            DistributionComparison.Compare(fp32, ModelQuantizer.Quantize(fp32, TripRtn(name), options), eval, PerplexityProtocol.Document, 512);
        DistributionComparisonResult trip = Compare("W4A8-TRIP"), mixed = Compare("W4A8-MIXED-TRIP");
        TestContext.Out.WriteLine($"KL vs FP32: W4A8-TRIP (RTN) {trip.MeanKlDivergence:G3}, W4A8-MIXED-TRIP (RTN) {mixed.MeanKlDivergence:G3}");
        Assert.That(trip.Candidate.Perplexity / trip.Reference.Perplexity, Is.LessThan(1.25));
        Assert.That(mixed.MeanKlDivergence, Is.GreaterThan(trip.MeanKlDivergence), "4-bit lower-bit tokens add error");
    }

    [Test]
    public void PrunedRowsSkipTheFusedOutputProjectionAndSurvivorsMatchTheDenseRun()
    {
        // pruning only in the last layer: survivors saw the dense attention, and every TRIP linear is row-independent
        // (one static scale per tensor), so skipping the pruned rows in o_proj changes nothing for the survivors
        TransformerModel trip = ModelQuantizer.Quantize(Bundled.Value.Model, TripRtn(), new ModelQuantizationOptions { Calibration = Calibration(0, 4) });
        int[] tokens = PrunedInferenceTests.RandomTokens(48, trip.Config.VocabSize, seed: 3);
        float[] dense = trip.CreateContext().Forward(tokens, allLogits: true);
        var pruning = new TransformerModel(trip.Weights, trip.Kernel, trip.Options with { Pruning = new TokenPruningSchedule([0, 0, 0, 0, 0.5]) });
        InferenceContext context = pruning.CreateContext();
        float[] pruned = context.Forward(tokens, allLogits: true);
        Assert.That(context.SurvivingTokenIndices, Has.Count.EqualTo(24));
        int v = trip.Config.VocabSize;
        for (int k = 0; k < context.SurvivingTokenIndices.Count; k++)
        {
            int i = context.SurvivingTokenIndices[k];
            Assert.That(pruned.AsSpan(k * v, v).ToArray(), Is.EqualTo(dense.AsSpan(i * v, v).ToArray()).Within(1e-5f), $"token {i}");
        }
        // decode continues on the pruned caches
        float[] step = context.Forward([7]);
        Assert.That(step, Has.All.Matches<float>(float.IsFinite));
    }
}
