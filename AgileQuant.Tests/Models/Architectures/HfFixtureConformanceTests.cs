using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// The Hugging Face fixtures in ../shared/fixtures (LLaMA with GQA, OPT, BLOOM; F32/F16/BF16 weights)
/// against the logits Hugging Face's own modeling code produced. Needs ../shared.
/// </summary>
[TestFixture]
public class HfFixtureConformanceTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData("llama_tiny_gqa", "model.safetensors", "reference.json");
        yield return new TestCaseData("llama_tiny_gqa", "model.f16.safetensors", "reference.f16.json");
        yield return new TestCaseData("llama_tiny_gqa", "model.bf16.safetensors", "reference.bf16.json");
        yield return new TestCaseData("opt_tiny_125m_style", "model.safetensors", "reference.json");
        yield return new TestCaseData("opt_tiny_125m_style", "model.f16.safetensors", "reference.f16.json");
        yield return new TestCaseData("bloom_tiny", "model.safetensors", "reference.json");
        yield return new TestCaseData("bloom_tiny", "model.f16.safetensors", "reference.f16.json");
    }

    private static (TransformerModel Model, JsonElement Reference) Load(string fixture, string weights, string reference)
    {
        string dir = SharedAssets.Require("fixtures/" + fixture);
        LoadedModel loaded = ModelLoader.Load(dir, new ModelLoadOptions { WeightsFile = weights });
        JsonElement json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, reference))).RootElement;
        Assert.That(json.GetProperty("weights_file").GetString(), Is.EqualTo(weights), "reference belongs to another weights file");
        return (loaded.Model, json);
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static float[][] Matrix(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();

    private static void AssertLogitsClose(ReadOnlySpan<float> actual, float[] expected, string where)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), where);
        double worst = 0;
        int worstIndex = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            // |diff| <= 1e-4 + 1e-4·|ref|, the fixtures' suggested float32 tolerance
            double excess = Math.Abs(actual[i] - expected[i]) - (1e-4 + 1e-4 * Math.Abs(expected[i]));
            // NaN (an unset or poisoned logit) is the worst excess of all: it must fail, not compare false
            if (double.IsNaN(excess) ? !double.IsPositiveInfinity(worst) : excess > worst) { worst = double.IsNaN(excess) ? double.PositiveInfinity : excess; worstIndex = i; }
        }
        string detail = worstIndex < 0 ? "" : $"{where}: logit {worstIndex} is {actual[worstIndex]}, reference {expected[worstIndex]}";
        Assert.That(worstIndex, Is.EqualTo(-1), detail);
        Assert.That(TestLogits.ArgMax(actual), Is.EqualTo(Array.IndexOf(expected, expected.Max())), where + ": argmax");
    }

    [TestCaseSource(nameof(Cases))]
    public void LogitsOfEveryPositionMatch(string fixture, string weights, string reference)
    {
        var (model, json) = Load(fixture, weights, reference);
        int[] ids = Ints(json.GetProperty("input_ids"));
        float[][] expected = Matrix(json.GetProperty("logits"));
        int vocab = model.Config.VocabSize;
        float[] logits = model.CreateContext().Forward(ids, allLogits: true);
        for (int p = 0; p < ids.Length; p++) AssertLogitsClose(logits.AsSpan(p * vocab, vocab), expected[p], $"position {p}");
        Assert.That(Enumerable.Range(0, ids.Length).Select(p => TestLogits.ArgMax(logits.AsSpan(p * vocab, vocab))), Is.EqualTo(Ints(json.GetProperty("argmax"))));
    }

    [TestCaseSource(nameof(Cases))]
    public void GreedyContinuationAndCachedStepLogitsMatch(string fixture, string weights, string reference)
    {
        var (model, json) = Load(fixture, weights, reference);
        int[] ids = Ints(json.GetProperty("input_ids"));
        JsonElement greedy = json.GetProperty("greedy");
        int[] expectedTokens = Ints(greedy.GetProperty("new_tokens"));
        float[][] stepLogits = Matrix(greedy.GetProperty("step_logits"));
        InferenceContext context = model.CreateContext();
        float[] logits = context.Forward(ids);
        var tokens = new List<int>();
        for (int step = 0; step < expectedTokens.Length; step++)
        {
            AssertLogitsClose(logits, stepLogits[step], $"greedy step {step}");
            int next = TestLogits.ArgMax(logits);
            tokens.Add(next);
            logits = context.Forward([next]);
        }
        Assert.That(tokens, Is.EqualTo(expectedTokens));
    }

    [TestCaseSource(nameof(Cases))]
    public void LeftPaddedPromptMatches(string fixture, string weights, string reference)
    {
        var (model, json) = Load(fixture, weights, reference);
        JsonElement padded = json.GetProperty("left_padded");
        int[] ids = Ints(padded.GetProperty("input_ids"));
        bool[] padding = Ints(padded.GetProperty("attention_mask")).Select(m => m == 0).ToArray();
        float[][] expected = Matrix(padded.GetProperty("logits"));
        int vocab = model.Config.VocabSize, pads = padding.Count(p => p);
        float[] logits = model.CreateContext().Forward(ids, true, default, padding);
        for (int r = 0; r < expected.Length; r++) AssertLogitsClose(logits.AsSpan((pads + r) * vocab, vocab), expected[r], $"padded row {pads + r}");
    }
}
