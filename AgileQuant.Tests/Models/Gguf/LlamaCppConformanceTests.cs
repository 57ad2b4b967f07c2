using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// Our GGUF export of the Hugging Face fixture llama_tiny_gqa run by llama.cpp (LLamaSharp 0.30.0, CPU backend)
/// and by our runtime from the same file: the greedy continuations must be equal.
/// </summary>
[NonParallelizable]
public class LlamaCppConformanceTests
{
    private const int NewTokens = 24;

    [TestCase(GgmlType.F32)]
    [TestCase(GgmlType.F16)]
    [TestCase(GgmlType.Q8_0)]
    [TestCase(GgmlType.Q4_0)]
    public void LlamaCpp_GreedyTokens_EqualOurs_OnOurExport(GgmlType type)
    {
        string dir = SharedAssets.Require("fixtures/llama_tiny_gqa");
        using var temp = new TemporaryDirectory("aq-llamacpp-");
        LoadedModel hf = ModelLoader.Load(dir, new ModelLoadOptions());
        string path = Path.Combine(temp.FullPath, $"tiny-{type}.gguf");
        // Q8_0 from our W8 weights (one scale per row, every block carries it) and an F32 head: both engines then hold
        // the very same weights (our reader keeps every block's scale, so ggml's own block-wise Q8_0 would too).
        TransformerWeights source = type == GgmlType.Q8_0
            ? ModelQuantizer.Quantize(hf.Model, QuantizationConfig.Parse("W8A8")).Weights
            : hf.Model.Weights;
        GgufModelWriter.Write(path, source, GgufVocabulary.Placeholder(hf.Model.Config.VocabSize),
            new GgufWriteOptions { WeightType = type, OutputType = type == GgmlType.Q8_0 ? GgmlType.F32 : null });
        int[] prompt = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement
            .GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();

        TransformerModel ours = ModelLoader.Load(path, new ModelLoadOptions()).Model;
        InferenceContext context = ours.CreateContext();
        float[] logits = context.Forward(prompt);
        var ourTokens = new List<int>();
        var ourMargins = new List<float>();
        for (int i = 0; i < NewTokens; i++)
        {
            int next = TestLogits.ArgMax(logits);
            ourTokens.Add(next);
            ourMargins.Add(TopMargin(logits));
            logits = context.Forward([next]);
        }

        // llama.cpp follows our greedy path (teacher forcing), so one near-tie cannot derail the rest of the comparison.
        using var llama = new LlamaCppSession(path, contextSize: 256, threads: 2);
        Assert.That(llama.VocabSize, Is.EqualTo(ours.Config.VocabSize));
        float[] theirLogits = llama.Forward(prompt);
        var theirTokens = new List<int>();
        for (int i = 0; i < NewTokens; i++)
        {
            theirTokens.Add(TestLogits.ArgMax(theirLogits));
            theirLogits = llama.Forward([ourTokens[i]]);
        }
        TestContext.Out.WriteLine($"{type}: ours   {string.Join(' ', ourTokens)}\n{type}: theirs {string.Join(' ', theirTokens)}\nmargins {string.Join(' ', ourMargins.Select(m => m.ToString("F3")))}");
        // F32/F16: the same arithmetic up to summation order, every token equal. Q8_0/Q4_0: both engines also quantize
        // activations to 8 bits (llama.cpp per 32-block, we per token), so only steps whose top-2 logit margin is
        // above 0.1 must agree.
        float tolerance = type is GgmlType.F32 or GgmlType.F16 ? 0 : 0.1f;
        for (int i = 0; i < NewTokens; i++)
            if (ourMargins[i] > tolerance)
                Assert.That(theirTokens[i], Is.EqualTo(ourTokens[i]), $"step {i} (our top-2 margin {ourMargins[i]:F3})");
        Assert.That(ourMargins.Count(m => m > tolerance), Is.GreaterThanOrEqualTo(NewTokens * 3 / 4), "too few decisive steps to compare");
    }

    private static float TopMargin(float[] logits)
    {
        float[] sorted = logits.OrderByDescending(x => x).Take(2).ToArray();
        return sorted[0] - sorted[1];
    }
}
