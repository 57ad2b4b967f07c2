using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;
using LLama.Native;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// Every family's seeded random model (<see cref="FamilyTestModel"/>) written as F32 GGUF by our writer runs in llama.cpp
/// (LLamaSharp 0.30.0, CPU backend, F32 KV cache) and in AgileQuant with logits at every position of a 64-token prompt
/// within 1e-3 · max|logit| of llama.cpp's; the same weights as a Hugging Face checkpoint (config.json written by hand,
/// safetensors under the family's names) give the GGUF's logits within 1e-5 · max|logit|.
/// </summary>
/// <remarks>
/// Tolerance against llama.cpp: both engines compute in FP32 from the same values; they differ in summation order, in
/// llama.cpp's RoPE angles (a running product of θ^(−2/d) where we take powers) and, for Gemma's GeGLU, in llama.cpp's
/// GELU, which it reads from a table of FP16 inputs and outputs (relative error up to 2⁻¹¹ per element). The KV cache is
/// set to F32: llama.cpp's default F16 cache rounds every key and value to 11 bits.
/// </remarks>
[NonParallelizable]
public class FamilyConformanceTests
{
    private const int PromptLength = 64;
    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TemporaryDirectory("aq-families-");

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    public static IEnumerable<FamilyTestModel> Models => FamilyTestModel.All;

    public static IEnumerable<FamilyTestModel> LlamaCppModels => FamilyTestModel.All.Where(m => m.RunsInLlamaCpp);

    [Test]
    public void EveryRegisteredGgufFamily_HasAModelThatRunsInLlamaCpp()
    {
        string[] families = ArchitectureRegistry.All.Where(a => a.GgufArchitecture is not null).Select(a => a.Family).ToArray();
        Assert.That(LlamaCppModels.Select(m => m.Config.Family).Distinct(), Is.EquivalentTo(families));
    }

    [TestCaseSource(nameof(LlamaCppModels))]
    public void OurGguf_RunsInLlamaCpp_WithOurLogitsAtEveryPosition(FamilyTestModel model)
    {
        string path = WriteGguf(model);
        int[] prompt = Prompt(model.Config.VocabSize);
        float[] ours = Load(path).CreateContext().Forward(prompt, allLogits: true); // (positions, vocab)
        using var llama = new LlamaCppSession(path, contextSize: model.Config.MaxSequenceLength, threads: 2, kvCacheType: GGMLType.GGML_TYPE_F32);
        Assert.That(llama.VocabSize, Is.EqualTo(model.Config.VocabSize));
        float[][] theirs = llama.ForwardAll(prompt);
        (double error, double largest) = Compare(ours, theirs);
        TestContext.Out.WriteLine($"{model}: max |ours - llama.cpp| = {error:G4}, max |logit| = {largest:G4} ({error / largest:G3} of it)");
        Assert.That(error, Is.LessThanOrEqualTo(1e-3 * largest), model.Name);
    }

    [TestCaseSource(nameof(Models))]
    public void HuggingFaceCheckpoint_GivesTheGgufsConfigAndLogits(FamilyTestModel model)
    {
        TransformerModel gguf = Load(WriteGguf(model));
        TransformerModel hf = Load(WriteHuggingFace(model));
        // the hand-written config.json states the hand-written configuration; Llama 3.1's factors within rounding of Hugging Face's formula
        Assert.That(hf.Config with { RotaryFrequencyFactors = null }, Is.EqualTo(model.Config with { RotaryFrequencyFactors = null }), "config.json");
        Assert.That(gguf.Config, Is.EqualTo(model.Config with { RotaryPairing = model.Family.GgufRotaryPairing }), "GGUF (Q/K rows in the family's GGUF layout)");
        if (model.Config.RotaryFrequencyFactors is { } expected)
            Assert.That(hf.Config.RotaryFrequencyFactors!.Factors, Is.EqualTo(expected.Factors).Within(1e-4).Percent, "llama3 frequency factors (relative 1e-6)");

        int[] prompt = Prompt(model.Config.VocabSize);
        float[] fromGguf = gguf.CreateContext().Forward(prompt, allLogits: true);
        float[] fromHf = hf.CreateContext().Forward(prompt, allLogits: true);
        double largest = fromGguf.Max(Math.Abs), error = fromGguf.Zip(fromHf, (a, b) => (double)Math.Abs(a - b)).Max();
        TestContext.Out.WriteLine($"{model}: max |Hugging Face - GGUF| = {error:G4}, max |logit| = {largest:G4}");
        Assert.That(error, Is.LessThanOrEqualTo(1e-5 * largest), model.Name);
    }

    [Test]
    public void SlidingWindow_ChangesOnlyThePositionsPastIt()
    {
        FamilyTestModel model = FamilyTestModel.All.Single(m => m.Name == "mistral-window16");
        TransformerWeights weights = model.RandomWeights(Seed(model));
        int[] prompt = Prompt(model.Config.VocabSize);
        float[] windowed = new TransformerModel(weights, TestKernels.Default).CreateContext().Forward(prompt, allLogits: true);
        float[] full = new TransformerModel(weights.WithConfig(c => c with { SlidingWindow = 0 }), TestKernels.Default).CreateContext().Forward(prompt, allLogits: true);
        int v = model.Config.VocabSize, window = model.Config.SlidingWindow;
        // a query at position p sees positions p - window < q ≤ p: all of them until p = window - 1
        Assert.That(windowed.AsSpan(0, window * v).ToArray(), Is.EqualTo(full.AsSpan(0, window * v).ToArray()), "positions inside the window");
        for (int p = window; p < PromptLength; p++)
            Assert.That(windowed.AsSpan(p * v, v).ToArray(), Is.Not.EqualTo(full.AsSpan(p * v, v).ToArray()), $"position {p}");
    }

    private static int Seed(FamilyTestModel model) => 1000 + FamilyTestModel.All.ToList().IndexOf(model);

    // 64 seeded token ids after BOS, away from the placeholder vocabulary's control and byte tokens.
    private static int[] Prompt(int vocab)
    {
        var random = new Random(64);
        return [1, .. Enumerable.Range(1, PromptLength - 1).Select(_ => random.Next(3, vocab))];
    }

    private static TransformerModel Load(string path) => ModelLoader.Load(path, new ModelLoadOptions()).Model;

    private string WriteGguf(FamilyTestModel model)
    {
        string path = Path.Combine(_temp.FullPath, model.Name + ".gguf");
        if (!File.Exists(path)) GgufModelWriter.Write(path, model.RandomWeights(Seed(model)), GgufVocabulary.Placeholder(model.Config.VocabSize));
        return path;
    }

    private string WriteHuggingFace(FamilyTestModel model)
    {
        string dir = Path.Combine(_temp.FullPath, model.Name + "-hf");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), model.HfConfigJson);
        HfTestCheckpoint.Write(Path.Combine(dir, SafeTensorsCheckpoint.SingleFileName), model.Family, model.RandomWeights(Seed(model)), "model.", storeTiedHead: false);
        return dir;
    }

    // max |ours - theirs| over every position and token, and max |theirs|
    private static (double Error, double Largest) Compare(float[] ours, float[][] theirs)
    {
        double error = 0, largest = 0;
        int v = theirs[0].Length;
        for (int p = 0; p < theirs.Length; p++)
            for (int i = 0; i < v; i++)
            {
                error = Math.Max(error, Math.Abs(ours[p * v + i] - theirs[p][i]));
                largest = Math.Max(largest, Math.Abs(theirs[p][i]));
            }
        return (error, largest);
    }
}
