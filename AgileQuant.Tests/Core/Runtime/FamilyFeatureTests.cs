using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// The runtime pieces the newer families need, each against its scalar definition: GeGLU's vectorized gelu-tanh gate,
/// soft-capping, RoPE's linear scaling and per-dimension frequency factors, llama.cpp's sliding-window layer pattern,
/// and the pruner's rule that a row without a start-token score (NaN) is no candidate.
/// </summary>
public class FamilyFeatureTests
{
    [Test]
    public void GeGlu_EqualsTheScalarGeluTanhTimesUp()
    {
        const int width = 1000, rows = 3; // a width that is not a whole number of chunks or vectors
        var random = new Random(3);
        float[] gate = Enumerable.Range(0, rows * width).Select(_ => (random.NextSingle() - 0.5f) * 12).ToArray();
        float[] inner = Enumerable.Range(0, rows * width).Select(_ => random.NextSingle() - 0.5f).ToArray();
        float[] expected = gate.Zip(inner, (g, x) => (float)(0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g))) * x)).ToArray();
        new GatedActivation(new RowRanges(new AgileQuant.Intrinsics.Threading.KernelThreads(1)), width, MlpKind.GeGlu).Run(gate, inner, rows);
        for (int i = 0; i < expected.Length; i++)
            Assert.That(inner[i], Is.EqualTo(expected[i]).Within(2e-6 * Math.Max(1, Math.Abs(expected[i]))), $"element {i}");
    }

    [Test]
    public void SoftCap_IsCapTimesTanhOfXOverCap()
    {
        float[] x = [-200f, -30f, -1f, 0f, 0.5f, 29f, 1e6f];
        float[] capped = x.ToArray();
        ActivationFunctions.SoftCap(capped, 30f);
        for (int i = 0; i < x.Length; i++)
            Assert.That(capped[i], Is.EqualTo((float)(30 * Math.Tanh(x[i] / 30.0))).Within(1e-5f * 30), $"x = {x[i]}");
    }

    [Test]
    public void RotaryEmbedding_ScalesEachPairsAngleByItsFactors()
    {
        const int headDim = 8;
        const float theta = 10000f, linear = 4f;
        float[] factors = [1f, 2f, 8f, 32f];
        var scaled = new RotaryEmbedding(headDim, theta, RotaryPairing.RotateHalf, linear, factors);
        var plain = new RotaryEmbedding(headDim, theta, RotaryPairing.RotateHalf);
        float[] rotation = new float[2 * headDim], reference = new float[2 * headDim];
        const int position = 37;
        scaled.FillRotation(position, rotation);
        for (int i = 0; i < headDim / 2; i++)
        {
            // pair i turns by pos · θ^(−2i/d) / (s · f_i): the unscaled rotation at that (fractional) position
            double angle = position * Math.Pow(theta, -2.0 * i / headDim) / (linear * factors[i]);
            Assert.That(rotation[i], Is.EqualTo(Math.Cos(angle)).Within(1e-6), $"cos of pair {i}");
            Assert.That(rotation[headDim + i + headDim / 2], Is.EqualTo(Math.Sin(angle)).Within(1e-6), $"sin of pair {i}");
        }
        // no scaling: the same rotation as before
        plain.FillRotation(position, reference);
        new RotaryEmbedding(headDim, theta, RotaryPairing.RotateHalf, 1f, null).FillRotation(position, rotation);
        Assert.That(rotation, Is.EqualTo(reference));
    }

    [Test]
    public void Llama3FrequencyFactors_KeepHighFrequencies_ScaleLowOnes_AndBlendBetween()
    {
        float[] factors = RotaryEmbedding.Llama3FrequencyFactors(headDim: 128, theta: 500000f, factor: 8f, lowFrequencyFactor: 1f, highFrequencyFactor: 4f, originalContextLength: 8192);
        Assert.That(factors, Has.Length.EqualTo(64));
        Assert.That(factors[0], Is.EqualTo(1f), "wavelength 2π: unscaled");
        Assert.That(factors[^1], Is.EqualTo(8f), "the longest wavelength: divided by the factor");
        Assert.That(factors, Is.Ordered.Ascending);
        Assert.That(factors.Count(f => f > 1 && f < 8), Is.GreaterThan(0), "a smooth band between");
    }

    [TestCase(0, new[] { true, true, true, true })]
    [TestCase(2, new[] { true, false, true, false })]
    [TestCase(6, new[] { true, true, true, true })]
    [TestCase(3, new[] { true, true, false, true })]
    public void SlidingWindowPattern_FollowsLlamaCppsRule(int pattern, bool[] local)
    {
        var config = new TransformerConfig
        {
            Family = "gemma2", VocabSize = 8, HiddenSize = 8, IntermediateSize = 8, NumLayers = local.Length, NumHeads = 2, NumKvHeads = 2,
            MaxSequenceLength = 8, Norm = NormKind.RmsNorm, NormEpsilon = 1e-6f, Positions = PositionKind.Rotary, Mlp = MlpKind.GeGlu,
            SlidingWindow = 4, SlidingWindowPattern = pattern,
        };
        Assert.That(Enumerable.Range(0, local.Length).Select(config.IsLocalLayer), Is.EqualTo(local));
        Assert.That(Enumerable.Range(0, local.Length).Any((config with { SlidingWindow = 0 }).IsLocalLayer), Is.False, "no window, no local layer");
    }

    [Test]
    public void RowsWithoutAStartTokenScore_AreNoCandidates()
    {
        float[] scores = [9f, float.NaN, 0.1f, float.NaN, 0.3f, 0.2f, 5f];
        Assert.That(TokenPruner.RankCandidates(scores, firstIsStart: true, PruningDirection.Lowest), Is.EqualTo(new[] { 2, 5, 4 }));
        Assert.That(TokenPruner.SelectPruned(scores, 0.9, firstIsStart: true, PruningDirection.Highest), Is.EqualTo(new[] { 2, 4, 5 }));
    }
}
