using AgileQuant.Core.Generation;

namespace AgileQuant.Tests.Core.Generation;

/// <summary>Min-p, the penalties and the top-k selection of <see cref="TokenSampler"/> against hand-computed expectations and a plain full-sort reference.</summary>
[TestFixture]
public class SamplingFilterTests
{
    private static readonly float[] Logits = [1f, 3f, 2f, 0.5f, 2.9f];

    [Test]
    public void MinPKeepsOnlyTokensAtLeastThatFractionOfTheBest()
    {
        // p_i / p_max = exp(l_i − 3): token 4 → 0.905, token 2 → 0.368, token 0 → 0.135, token 3 → 0.082.
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, MinP = 0.3f, Seed = 9 });
        int[] picks = Enumerable.Range(0, 2000).Select(_ => sampler.Sample(Logits)).ToArray();
        Assert.That(picks.Distinct().OrderBy(x => x), Is.EqualTo(new[] { 1, 2, 4 }));
        // Renormalized over the three kept tokens.
        double z = Math.Exp(3) + Math.Exp(2) + Math.Exp(2.9);
        Assert.That(picks.Count(p => p == 2) / 2000.0, Is.EqualTo(Math.Exp(2) / z).Within(0.03));
    }

    [Test]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        // Greedy: token 1 (3.0) wins; once seen, 3.0 / 2 = 1.5 < 2.9, so token 4 wins; then 2.9 / 2 = 1.45 < 2.0: token 2.
        var sampler = new TokenSampler(new SamplingOptions { RepetitionPenalty = 2f });
        Assert.That(sampler.Sample(Logits), Is.EqualTo(1));
        sampler.Accept(1);
        Assert.That(sampler.Sample(Logits), Is.EqualTo(4));
        sampler.Accept(4);
        Assert.That(sampler.Sample(Logits), Is.EqualTo(2));
        // A negative logit is multiplied: −1 · 3 = −3 loses to −2.5.
        var negative = new TokenSampler(new SamplingOptions { RepetitionPenalty = 3f });
        negative.Accept(0);
        Assert.That(negative.Sample([-1f, -2.5f]), Is.EqualTo(1));
        sampler.Reset();
        Assert.That(sampler.Sample(Logits), Is.EqualTo(1), "Reset forgets the seen tokens");
    }

    [Test]
    public void FrequencyPenaltyCountsOccurrencesAndPresencePenaltyCountsOnce()
    {
        // Token 1 seen 3 times: 3.0 − 3 · 0.05 = 2.85 < 2.9 (frequency); with presence 0.05 instead, 2.95 > 2.9.
        var frequency = new TokenSampler(new SamplingOptions { FrequencyPenalty = 0.05f });
        var presence = new TokenSampler(new SamplingOptions { PresencePenalty = 0.05f });
        for (int i = 0; i < 3; i++) { frequency.Accept(1); presence.Accept(1); }
        Assert.That(frequency.Sample(Logits), Is.EqualTo(4));
        Assert.That(presence.Sample(Logits), Is.EqualTo(1));
    }

    [Test]
    public void PenaltiesLookOnlyAtTheWindow()
    {
        var sampler = new TokenSampler(new SamplingOptions { RepetitionPenalty = 2f, PenaltyWindow = 2 });
        sampler.Accept(1);
        Assert.That(sampler.Sample(Logits), Is.EqualTo(4), "token 1 is in the window");
        sampler.Accept(0);
        sampler.Accept(3);
        Assert.That(sampler.Sample(Logits), Is.EqualTo(1), "token 1 left the two-token window");
    }

    [Test]
    public void TopKSelectionDrawsAsAFullSortWould()
    {
        // Reference: sort the whole vocabulary (ties by id), keep k, softmax at T, draw with the same seeded generator.
        var random = new Random(123);
        float[] logits = Enumerable.Range(0, 3000).Select(_ => (float)Math.Round(random.NextDouble() * 8, 1)).ToArray(); // many ties
        foreach (int k in new[] { 1, 7, 40, 2999 })
        {
            var options = new SamplingOptions { Temperature = 0.7f, TopK = k, Seed = 5 };
            var sampler = new TokenSampler(options);
            var draws = new Random(5);
            int[] order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(k).ToArray();
            double[] p = order.Select(i => Math.Exp((logits[i] - logits[order[0]]) / 0.7)).ToArray();
            double sum = p.Sum();
            for (int n = 0; n < 200; n++)
            {
                double r = draws.NextDouble(), acc = 0;
                int expected = order[^1];
                for (int i = 0; i < k; i++) { acc += p[i] / sum; if (r < acc) { expected = order[i]; break; } }
                Assert.That(sampler.Sample(logits), Is.EqualTo(expected), $"k={k}, draw {n}");
            }
        }
    }

    [TestCase(-0.1f, 1f, 0f, 0f, 64)]
    [TestCase(1.1f, 1f, 0f, 0f, 64)]
    [TestCase(0f, 0f, 0f, 0f, 64)]
    [TestCase(0f, 1f, 2.5f, 0f, 64)]
    [TestCase(0f, 1f, 0f, -3f, 64)]
    [TestCase(0f, 1f, 0f, 0f, -1)]
    public void OutOfRangePenaltiesAndMinPAreRefused(float minP, float repetition, float frequency, float presence, int window) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions
        {
            Temperature = 1f, MinP = minP, RepetitionPenalty = repetition, FrequencyPenalty = frequency, PresencePenalty = presence, PenaltyWindow = window,
        }));
}
