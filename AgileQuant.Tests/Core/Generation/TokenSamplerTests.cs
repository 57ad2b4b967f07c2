using AgileQuant.Core;
using AgileQuant.Core.Generation;

namespace AgileQuant.Tests.Core.Generation;

[TestFixture]
public class TokenSamplerTests
{
    private static readonly float[] Logits = [1f, 3f, 2f, 0.5f, 2.9f];

    [Test]
    public void ZeroTemperatureIsArgMax() =>
        Assert.That(new TokenSampler(SamplingOptions.Greedy).Sample(Logits), Is.EqualTo(1));

    [Test]
    public void SameSeedGivesSameSequenceAndOtherSeedsDiffer()
    {
        int[] Run(int seed)
        {
            var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, Seed = seed });
            return Enumerable.Range(0, 200).Select(_ => sampler.Sample(Logits)).ToArray();
        }
        Assert.That(Run(7), Is.EqualTo(Run(7)));
        Assert.That(Run(7), Is.Not.EqualTo(Run(8)));
    }

    [Test]
    public void TopKOneIsArgMax()
    {
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 5f, TopK = 1, Seed = 3 });
        Assert.That(Enumerable.Range(0, 50).Select(_ => sampler.Sample(Logits)), Is.All.EqualTo(1));
    }

    [Test]
    public void TopKTwoOnlyPicksTheTwoLargest()
    {
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, TopK = 2, Seed = 3 });
        int[] picks = Enumerable.Range(0, 500).Select(_ => sampler.Sample(Logits)).ToArray();
        Assert.That(picks.Distinct().OrderBy(x => x), Is.EqualTo(new[] { 1, 4 }));
    }

    [Test]
    public void TopPKeepsTheSmallestNucleus()
    {
        // softmax([1,3,2,0.5,2.9]): p(1)=0.405, p(4)=0.366, p(2)=0.149, ... ; top-p 0.7 keeps {1, 4}
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, TopP = 0.7f, Seed = 11 });
        int[] picks = Enumerable.Range(0, 500).Select(_ => sampler.Sample(Logits)).ToArray();
        Assert.That(picks.Distinct().OrderBy(x => x), Is.EqualTo(new[] { 1, 4 }));
    }

    [Test]
    public void SampledFrequenciesFollowTheSoftmax()
    {
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, Seed = 5 });
        const int draws = 20000;
        int[] counts = new int[Logits.Length];
        for (int i = 0; i < draws; i++) counts[sampler.Sample(Logits)]++;
        double z = Logits.Sum(l => Math.Exp(l));
        for (int t = 0; t < Logits.Length; t++)
            Assert.That(counts[t] / (double)draws, Is.EqualTo(Math.Exp(Logits[t]) / z).Within(0.015), $"token {t}");
    }

    [Test]
    public void NaNLogitsAreRefused() =>
        Assert.Throws<AgileQuantException>(() => new TokenSampler(SamplingOptions.Greedy).Sample([0f, float.NaN]));

    [TestCase(-1f, 0, 1f)]
    [TestCase(1f, -1, 1f)]
    [TestCase(1f, 0, 0f)]
    [TestCase(1f, 0, 1.5f)]
    public void OutOfRangeOptionsAreRefused(float temperature, int topK, float topP) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP }));
}
