using System.Text.Json;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Scalar;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Tests.Models;

/// <summary>stories260K against llama2.c's own FP32 forward pass (../shared/assets/golden). Needs ../shared.</summary>
[TestFixture]
public class Stories260KGoldenTests
{
    private static JsonElement Golden() =>
        JsonDocument.Parse(File.ReadAllText(SharedAssets.Require("assets/golden/stories260K_once_upon_a_time.json"))).RootElement;

    private static TransformerModel Model() =>
        new(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);

    [Test]
    public void HeaderMatchesGoldenConfig()
    {
        JsonElement golden = Golden();
        TransformerConfig c = Llama2cCheckpoint.ReadConfig(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));
        int[] expected = golden.GetProperty("config").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.That(new[] { c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKvHeads, c.VocabSize, c.MaxSequenceLength }, Is.EqualTo(expected));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void LogitsOfEveryPositionMatchLlama2c(bool prefill)
    {
        JsonElement golden = Golden();
        // Every recorded position: the prompt, then the greedy continuation fed back in.
        int[] prompt = golden.GetProperty("positions").EnumerateArray().Select(e => e.GetProperty("input").GetInt32()).ToArray();
        InferenceContext context = Model().CreateContext();
        int vocab = context.Model.Config.VocabSize;
        float[][] logits = new float[prompt.Length][];
        if (prefill)
        {
            float[] all = context.Forward(prompt, allLogits: true);
            for (int p = 0; p < prompt.Length; p++) logits[p] = all.AsSpan(p * vocab, vocab).ToArray();
        }
        else
        {
            for (int p = 0; p < prompt.Length; p++) logits[p] = context.Forward(prompt.AsSpan(p, 1));
        }

        foreach (JsonElement position in golden.GetProperty("positions").EnumerateArray())
        {
            int p = position.GetProperty("pos").GetInt32();
            float[] row = logits[p];
            Assert.That(Array.IndexOf(row, row.Max()), Is.EqualTo(position.GetProperty("argmax").GetInt32()), $"argmax at position {p}");
            Assert.That(row.Max(), Is.EqualTo(position.GetProperty("logit_argmax").GetDouble()).Within(1e-4), $"max logit at position {p}");
            double[] first8 = position.GetProperty("logits_first8").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            for (int i = 0; i < 8; i++) Assert.That(row[i], Is.EqualTo(first8[i]).Within(1e-4), $"logit {i} at position {p}");
            // The sum of 512 logits carries 512 rounding errors of ~1e-6 each in llama2.c and here.
            Assert.That(row.Sum(x => (double)x), Is.EqualTo(position.GetProperty("logit_sum").GetDouble()).Within(5e-3), $"logit sum at position {p}");
        }
    }

    [Test]
    public void SixtyGreedyTokensMatchLlama2c()
    {
        JsonElement golden = Golden();
        int[] prompt = golden.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] expected = golden.GetProperty("greedy_continuation").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        InferenceContext context = Model().CreateContext();
        float[] logits = context.Forward(prompt);
        var generated = new List<int>();
        while (generated.Count < expected.Length)
        {
            int next = Array.IndexOf(logits, logits.Max());
            generated.Add(next);
            logits = context.Forward([next]);
        }
        Assert.That(generated, Is.EqualTo(expected));
    }
}
