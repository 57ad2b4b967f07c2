using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// The paper's schemes and token pruning on every family's seeded random model (<see cref="FamilyTestModel"/>): each
/// scheme quantizes every decoder linear to its packed format, runs, and keeps the logits within the bound its rounding
/// implies of FP32's; the quantized model survives its checkpoint; a pruning schedule prunes on every family, and in a
/// sliding-window layer only rows that can see the start token are candidates (docs/architecture.md, "Token pruning with sliding-window layers").
/// </summary>
/// <remarks>
/// The bound. Each quantized linear multiplies weights rounded to b_w bits (per row or per group: the relative RMS error of
/// a rounded uniform weight is ε_w = 1 / (2·(2^(b_w−1) − 1)), the step over √12 against the range over √3) by activations
/// rounded per token to b_a bits (ε_a = κ / ((2^(b_a−1) − 1)·√12), κ = max|x| / rms(x) of a row, taken as 4 for widths
/// of 256–512, heavier-tailed after gated MLPs than a Gaussian's ≈ 3). A layer rounds the inputs of four linear groups
/// (Q/K/V, output, gate/up, down) and, in the schemes that quantize activations, q/k/v and the KV cache to 8 bits (ε₈):
/// errors that add in quadrature over L layers to a relative RMS logit error of about √(4L·(ε_w² + ε_a²) + 2L·ε₈²). The
/// tests allow twice that (attention and norms amplify some errors), and at most 1 (the error of logits unrelated to
/// FP32's is √2). The mixed scheme is bounded by its lower-bit tokens' 4-bit activations. GPTQ rounds to the same grid
/// with error feedback from four short random calibration sequences, so RTN's bound holds for it too.
/// </remarks>
[TestFixture]
public class FamilyQuantizationTests
{
    private const int PromptLength = 64;
    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TemporaryDirectory("aq-family-quant-");

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    public static IEnumerable<TestCaseData> ModelsAndSchemes =>
        from model in FamilyTestModel.All.Where(m => m.RunsInLlamaCpp) // one model per family and layout
        from scheme in new[] { "W8A8", "W4A8-RTN", "W4A8-GPTQ", "W4A4-RTN", "W4A8-MIXED" }
        select new TestCaseData(model, scheme).SetName($"{model.Name} {scheme}");

    public static IEnumerable<FamilyTestModel> Models => FamilyTestModel.All;

    [TestCaseSource(nameof(ModelsAndSchemes))]
    public void Scheme_QuantizesEveryLinear_AndKeepsTheLogitsWithinItsBound(FamilyTestModel model, string schemeName)
    {
        QuantizationConfig scheme = QuantizationConfig.Parse(schemeName);
        TransformerModel fp32 = new(model.RandomWeights(seed: 5), TestKernels.Default);
        TransformerModel quantized = ModelQuantizer.Quantize(fp32, scheme, new ModelQuantizationOptions { Calibration = Calibration(model.Config.VocabSize) });
        foreach (LayerWeights layer in quantized.Weights.Layers)
            foreach ((LayerTensor role, LinearLayer linear) in layer.Linears)
                Assert.That(linear.Weight, scheme.WeightBits == 8 ? Is.TypeOf<Int8RowMatrix>() : Is.TypeOf<PackedInt4Matrix>(), $"{role}");

        int[] prompt = Prompt(model.Config.VocabSize);
        float[] reference = fp32.CreateContext().Forward(prompt, allLogits: true);
        float[] logits = quantized.CreateContext().Forward(prompt, allLogits: true);
        Assert.That(logits.All(float.IsFinite), "finite logits");
        double error = RelativeRmsError(logits, reference), bound = Bound(scheme, model.Config.NumLayers);
        TestContext.Out.WriteLine($"{model} {scheme.Name}: relative RMS logit error {error:G3}, bound {bound:G3}");
        Assert.That(error, Is.GreaterThan(0), "the scheme changed something");
        Assert.That(error, Is.LessThanOrEqualTo(bound));
    }

    [TestCaseSource(nameof(Models))]
    public void QuantizedModel_KeepsItsLogitsThroughTheCheckpoint(FamilyTestModel model)
    {
        var scheme = QuantizationConfig.Parse("W4A8-RTN");
        TransformerModel quantized = ModelQuantizer.Quantize(new TransformerModel(model.RandomWeights(seed: 5), TestKernels.Default), scheme);
        string path = Path.Combine(_temp.FullPath, model.Name + ".safetensors");
        QuantizedCheckpointWriter.Write(path, quantized, scheme.Name);
        QuantizedCheckpoint read = QuantizedCheckpointReader.Load(path);
        Assert.That(read.Weights.Config, Is.EqualTo(model.Config));
        var reloaded = new TransformerModel(read.Weights, TestKernels.Default, QuantizedCheckpointReader.RuntimeOptionsFor(read, TestKernels.Default));
        int[] prompt = Prompt(model.Config.VocabSize);
        Assert.That(reloaded.CreateContext().Forward(prompt, allLogits: true), Is.EqualTo(quantized.CreateContext().Forward(prompt, allLogits: true)));
    }

    [TestCaseSource(nameof(Models))]
    public void PruningSchedule_PrunesOnEveryFamily_QuantizedOrNot(FamilyTestModel model)
    {
        // the progressive schedule from layer 1, β = 0.3, with the mixed scheme's lower-bit tokens
        var schedule = TokenPruningSchedule.Progressive(model.Config.NumLayers, startLayer: 1, beta: 0.3, lowBitRatio: 0.2);
        TransformerWeights weights = model.RandomWeights(seed: 5);
        TransformerModel fp32 = new(weights, TestKernels.Default, new RuntimeOptions { Pruning = schedule });
        TransformerModel mixed = ModelQuantizer.Quantize(new TransformerModel(weights, TestKernels.Default), QuantizationConfig.Parse("W4A8-MIXED"),
            new ModelQuantizationOptions { Calibration = Calibration(model.Config.VocabSize) });
        mixed = new TransformerModel(mixed.Weights, mixed.Kernel, mixed.Options with { Pruning = schedule, LowBitTokenRatio = 0 });
        int[] prompt = Prompt(model.Config.VocabSize);
        foreach ((string name, TransformerModel pruned) in new[] { ("FP32", fp32), ("W4A8-MIXED", mixed) })
        {
            InferenceContext context = pruned.CreateContext();
            float[] logits = context.Forward(prompt, allLogits: true);
            IReadOnlyList<int> survivors = context.SurvivingTokenIndices;
            TestContext.Out.WriteLine($"{model} {name}: {survivors.Count} of {PromptLength} tokens survive");
            Assert.That(survivors.Count, Is.LessThan(PromptLength * 0.8).And.GreaterThan(PromptLength / 2), name);
            Assert.That(survivors[0], Is.EqualTo(0), "start token kept");
            Assert.That(survivors[^1], Is.EqualTo(PromptLength - 1), "last token kept");
            Assert.That(logits, Has.Length.EqualTo(survivors.Count * model.Config.VocabSize));
            Assert.That(logits.All(float.IsFinite), name);
            // decode after the pruned prefill attends over every layer's survivors
            Assert.That(context.Forward([5]).All(float.IsFinite), name + " decode");
        }
    }

    [Test]
    public void InASlidingWindowLayer_OnlyRowsThatSeeTheStartToken_ArePruned()
    {
        // Gemma 3: layers 0-4 attend over a window of 16 positions. Pruning in layer 1 ranks rows by their attention to
        // the start token, which rows 16 and later cannot see there: they are not candidates, so they all survive.
        FamilyTestModel model = FamilyTestModel.All.Single(m => m.Name == "gemma3");
        int window = model.Config.SlidingWindow;
        Assert.That(model.Config.IsLocalLayer(1), Is.True);
        foreach (double ratio in new[] { 0.1, 0.5 })
        {
            var schedule = new TokenPruningSchedule([0, ratio]);
            InferenceContext context = new TransformerModel(model.RandomWeights(seed: 5), TestKernels.Default, new RuntimeOptions { Pruning = schedule }).CreateContext();
            context.Forward(Prompt(model.Config.VocabSize), allLogits: true);
            int[] pruned = Enumerable.Range(0, PromptLength).Except(context.SurvivingTokenIndices).ToArray();
            // floor(r·n) rows, but only the window's rows 1..15 (not the start token) are candidates
            Assert.That(pruned, Has.Length.EqualTo(Math.Min((int)(ratio * PromptLength), window - 1)), $"ratio {ratio}");
            Assert.That(pruned, Is.All.InRange(1, window - 1), $"ratio {ratio}");
        }
    }

    // 2 · √(4L · (ε_w² + ε_a²) + 2L · ε₈²), at most 1 (see the remarks)
    private static double Bound(QuantizationConfig scheme, int layers)
    {
        static double Activation(int bits) => 4 / (((1 << (bits - 1)) - 1) * Math.Sqrt(12)); // κ / (levels · √12), κ = 4
        double weight = 1 / (2.0 * ((1 << (scheme.WeightBits - 1)) - 1));
        // the mixed scheme's lower-bit tokens read 4-bit activations: bound it by them
        double activation = Activation(scheme.LowBitTokenRatio > 0 ? 4 : scheme.ActivationBits);
        double attention = scheme.EightBitQkv || scheme.EightBitKvCache ? Activation(8) : 0;
        double variance = 4 * layers * (weight * weight + activation * activation) + 2 * layers * attention * attention;
        return Math.Min(1, 2 * Math.Sqrt(variance));
    }

    private static double RelativeRmsError(float[] actual, float[] expected)
    {
        double error = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            error += (double)(actual[i] - expected[i]) * (actual[i] - expected[i]);
            norm += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(error / norm);
    }

    private static int[] Prompt(int vocab)
    {
        var random = new Random(64);
        return [1, .. Enumerable.Range(1, PromptLength - 1).Select(_ => random.Next(3, vocab))];
    }

    // Four seeded calibration sequences of 32 tokens, each starting with BOS.
    private static IReadOnlyList<int[]> Calibration(int vocab)
    {
        var random = new Random(32);
        return Enumerable.Range(0, 4).Select(_ => (int[])[1, .. Enumerable.Range(1, 31).Select(_ => random.Next(3, vocab))]).ToArray();
    }
}
