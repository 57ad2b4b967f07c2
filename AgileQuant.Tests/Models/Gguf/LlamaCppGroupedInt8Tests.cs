using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;
using LLama.Native;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// The 5-, 6- and 8-bit GGUF types on the integer kernels, against llama.cpp on the same files: the random LLaMA of
/// <see cref="LlamaCppPresetModels"/> quantized by llama.cpp's own quantizer to each preset loads its Q8_0 / Q5_0 / Q5_1 /
/// Q5_K / Q6_K tensors (Q4_0 and Q4_K_M files: their Q6_K heads and tensors) as <see cref="GroupedInt8Matrix"/>, no
/// <see cref="Fp32Matrix"/>, and the integer path's greedy tokens are llama.cpp's wherever the top-two gap exceeds the
/// rounding both engines do; our own Q4_K / Q6_K exports run in llama.cpp with its logits matching ours.
/// </summary>
/// <remarks>
/// The greedy tolerance. Our integer path rounds every matrix input to 8 bits per token (step max|x| / 127, so a relative
/// RMS error ε_ours = κ / (127·√12) with κ = max|x| / rms(x) ≤ 4 for the ≤ 512-wide rows of this model), llama.cpp per
/// block of 32 or 256 (ε = 3 / (127·√12), <see cref="LlamaCppPresetTests"/>); independent, they add in quadrature. A logit
/// passes R = 4·layers + 1 such roundings, so it moves by √R·ε·rms(logit) RMS, and the gap between two logits by √2 times
/// that. Over 32 steps the largest of these is about 3.5 RMS: tolerance = 3.5·√2·√R·√(ε_ours² + ε²)·rms(logit). Steps
/// whose top-two gap is below it are ties either engine may break differently; llama.cpp follows our tokens (teacher
/// forcing), so one tie does not derail the comparison.
/// </remarks>
[NonParallelizable]
public class LlamaCppGroupedInt8Tests
{
    private const int Steps = 32;

    private LlamaCppPresetModels _models = null!;
    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void Build()
    {
        _models = new LlamaCppPresetModels(seed: 2024);
        _temp = new TemporaryDirectory("aq-llamacpp-grouped-");
    }

    [OneTimeTearDown]
    public void Delete()
    {
        _models.Dispose();
        _temp.Dispose();
    }

    /// <summary>The presets whose tensors are all Q8_0 / Q5_x / Q6_K (and F32 norms), then Q4_0 and Q4_K_M with their Q6_K tensors.</summary>
    private static readonly LLamaFtype[] GroupedPresets = [LLamaFtype.MOSTLY_Q8_0, LLamaFtype.MOSTLY_Q5_0, LLamaFtype.MOSTLY_Q5_1, LLamaFtype.MOSTLY_Q5_K_M, LLamaFtype.MOSTLY_Q6_K];

    private static readonly LLamaFtype[] IntegerPathPresets = [.. GroupedPresets, LLamaFtype.MOSTLY_Q4_0, LLamaFtype.MOSTLY_Q4_K_M];

    [TestCaseSource(nameof(IntegerPathPresets))]
    public void Preset_LoadsItsFiveSixAndEightBitTensorsOntoGroupedInt8(LLamaFtype preset)
    {
        string path = _models.PathOf(preset);
        GgufFile file = GgufFile.Read(path);
        TransformerWeights loaded = ModelLoader.Load(path, new ModelLoadOptions()).Model.Weights;
        var grouped = new List<string>();
        foreach ((string name, IWeightMatrix matrix) in Matrices(loaded))
        {
            GgmlType type = file.FindTensor(name)!.Type;
            if (GroupedPresets.Contains(preset)) Assert.That(matrix, Is.Not.InstanceOf<Fp32Matrix>(), $"{preset} {name} ({type})");
            if (type is GgmlType.Q8_0 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q5_K or GgmlType.Q6_K)
            {
                Assert.That(matrix, Is.InstanceOf<GroupedInt8Matrix>(), $"{preset} {name} ({type})");
                grouped.Add($"{name} {type}");
            }
        }
        TestContext.Out.WriteLine($"{preset}: grouped int8: {string.Join(", ", grouped)}");
        Assert.That(grouped, Has.Some.StartsWith("output.weight"), "the head: Q6_K in these presets (Q8_0 in the Q8_0 one)");
    }

    [TestCaseSource(nameof(IntegerPathPresets))]
    public void IntegerPath_GreedyTokens_EqualLlamaCpps_WhereTheTopTwoGapExceedsTheTolerance(LLamaFtype preset)
    {
        string path = _models.PathOf(preset);
        TransformerModel ours = ModelLoader.Load(path, new ModelLoadOptions()).Model;
        var random = new Random(7);
        int[] prompt = [1, .. Enumerable.Range(0, 4).Select(_ => random.Next(3, ours.Config.VocabSize))];
        InferenceContext context = ours.CreateContext();
        float[] logits = context.Forward(prompt);
        var ourTokens = new List<int>();
        var margins = new List<float>();
        for (int i = 0; i < Steps; i++)
        {
            int next = TestLogits.ArgMax(logits);
            ourTokens.Add(next);
            margins.Add(TopTwoGap(logits));
            logits = context.Forward([next]);
        }

        using var llama = new LlamaCppSession(path, contextSize: 64, threads: 2);
        float[] theirLogits = llama.Forward(prompt);
        double rms = Math.Sqrt(theirLogits.Average(v => (double)v * v));
        var theirTokens = new List<int>();
        for (int i = 0; i < Steps; i++)
        {
            theirTokens.Add(TestLogits.ArgMax(theirLogits));
            theirLogits = llama.Forward([ourTokens[i]]);
        }
        int roundings = 4 * ours.Config.NumLayers + 1;
        double ourRounding = 4 / (127 * Math.Sqrt(12));
        double tolerance = 3.5 * Math.Sqrt(2) * Math.Sqrt(roundings) * Math.Sqrt(ourRounding * ourRounding + LlamaCppPresetTests.ActivationRounding * LlamaCppPresetTests.ActivationRounding) * rms;
        TestContext.Out.WriteLine($"{preset}: ours   {string.Join(' ', ourTokens)}\n{preset}: theirs {string.Join(' ', theirTokens)}\n" +
            $"gaps {string.Join(' ', margins.Select(m => m.ToString("F2")))}; tolerance {tolerance:F3} (rms(logit) {rms:F3}), {margins.Count(m => m > tolerance)} decisive steps");
        for (int i = 0; i < Steps; i++)
            if (margins[i] > tolerance)
                Assert.That(theirTokens[i], Is.EqualTo(ourTokens[i]), $"{preset} step {i} (our top-two gap {margins[i]:F3}, tolerance {tolerance:F3})");
        Assert.That(margins.Count(m => m > tolerance), Is.GreaterThanOrEqualTo(Steps / 4), "too few decisive steps to compare");
    }

    [TestCase(GgmlType.Q4_K)]
    [TestCase(GgmlType.Q6_K)]
    public void OurKQuantExport_LoadsInLlamaCpp_AndItsLogitsMatchOurs(GgmlType type)
    {
        string path = Path.Combine(_temp.FullPath, $"export-{type}.gguf");
        TransformerWeights weights = _models.Weights;
        GgufModelWriter.Write(path, weights, GgufVocabulary.Placeholder(weights.Config.VocabSize), new GgufWriteOptions { WeightType = type, OutputType = GgmlType.Q6_K });
        GgufFile file = GgufFile.Read(path);
        foreach ((string name, _) in Matrices(ModelLoader.Load(path, new ModelLoadOptions()).Model.Weights))
            Assert.That(file.FindTensor(name)!.Type, Is.EqualTo(name == "output.weight" ? GgmlType.Q6_K : type), name);
        // our FP32 logits on the file's values (each matrix checked to hold them) against llama.cpp's on the file
        (double error, double rms) = LlamaCppPresetTests.CompareLogits(path);
        LlamaCppPresetTests.AssertWithin(error, LlamaCppPresetTests.Tolerance(LlamaCppPresetTests.ActivationRounding, 4 * weights.Config.NumLayers + 1, rms), $"our {type} export", rms);
    }

    [Test]
    public void Q6_KTensors_ReadAndExportedAgain_AreTheSameBlocks()
    {
        string source = _models.PathOf(LLamaFtype.MOSTLY_Q6_K);
        string path = Path.Combine(_temp.FullPath, "re-export-Q6_K.gguf");
        LoadedModel loaded = ModelLoader.Load(source, new ModelLoadOptions());
        GgufModelWriter.Write(path, loaded.Model.Weights, GgufVocabulary.Placeholder(loaded.Model.Config.VocabSize), new GgufWriteOptions { WeightType = GgmlType.Q6_K });
        GgufFile before = GgufFile.Read(source), after = GgufFile.Read(path);
        using GgufTensorData beforeData = GgufTensorData.Open(before), afterData = GgufTensorData.Open(after);
        int compared = 0;
        foreach ((string name, _) in Matrices(loaded.Model.Weights))
        {
            GgufTensorInfo a = before.FindTensor(name)!, b = after.FindTensor(name)!;
            if (a.Type != GgmlType.Q6_K) continue;
            Assert.That(b.Type, Is.EqualTo(GgmlType.Q6_K), name);
            Assert.That(afterData.Bytes(b, 0, (int)b.ByteSize).ToArray(), Is.EqualTo(beforeData.Bytes(a, 0, (int)a.ByteSize).ToArray()), name);
            compared++;
        }
        Assert.That(compared, Is.GreaterThan(0), "the Q6_K preset has Q6_K tensors");
    }

    // Every matrix of a loaded model with its GGUF name.
    private static IEnumerable<(string Name, IWeightMatrix Matrix)> Matrices(TransformerWeights w)
    {
        for (int i = 0; i < w.Layers.Count; i++)
        {
            LayerWeights l = w.Layers[i];
            yield return ($"blk.{i}.attn_q.weight", l.Query.Weight);
            yield return ($"blk.{i}.attn_k.weight", l.Key.Weight);
            yield return ($"blk.{i}.attn_v.weight", l.Value.Weight);
            yield return ($"blk.{i}.attn_output.weight", l.Output.Weight);
            yield return ($"blk.{i}.ffn_gate.weight", l.Gate!.Weight);
            yield return ($"blk.{i}.ffn_up.weight", l.Up.Weight);
            yield return ($"blk.{i}.ffn_down.weight", l.Down.Weight);
        }
        yield return ("output.weight", w.LmHead.Weight);
    }

    private static float TopTwoGap(float[] logits)
    {
        float[] top = logits.OrderByDescending(x => x).Take(2).ToArray();
        return top[0] - top[1];
    }
}
