using AgileQuant.Core.Runtime;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>The fused KV-cache head products equal their definitions, computed here in double precision.</summary>
public sealed class CachedHeadProductsTests
{
    [Test]
    public void ScoresAndMixEqualTheirDefinitionsForEveryLengthAndStride()
    {
        var random = new Random(5);
        foreach (int dims in new[] { 1, 3, 8, 64, 128 })
            foreach (int slots in new[] { 70, 100 })
                for (int visible = 0; visible <= 70; visible++)
                {
                    float[] cache = Enumerable.Range(0, dims * slots).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                    float[] query = Enumerable.Range(0, dims).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                    float[] p = Enumerable.Range(0, visible).Select(_ => (float)random.NextDouble()).ToArray();
                    var scores = new float[visible];
                    var output = Enumerable.Repeat(float.NaN, dims).ToArray();
                    CachedHeadProducts.Scores(cache, slots, query, scores);
                    CachedHeadProducts.Mix(p, cache, slots, output);
                    for (int j = 0; j < visible; j++)
                    {
                        double exact = 0, magnitude = 0;
                        for (int d = 0; d < dims; d++)
                        {
                            exact += (double)query[d] * cache[d * slots + j];
                            magnitude += Math.Abs((double)query[d] * cache[d * slots + j]);
                        }
                        Assert.That(scores[j], Is.EqualTo(exact).Within(1e-6 * dims * magnitude + 1e-30), $"score {j} (dims {dims}, slots {slots}, visible {visible})");
                    }
                    for (int d = 0; d < dims; d++)
                    {
                        double exact = 0, magnitude = 0;
                        for (int j = 0; j < visible; j++)
                        {
                            exact += (double)p[j] * cache[d * slots + j];
                            magnitude += Math.Abs((double)p[j] * cache[d * slots + j]);
                        }
                        Assert.That(output[d], Is.EqualTo(exact).Within(1e-6 * Math.Max(1, visible) * magnitude + 1e-30), $"output {d} (dims {dims}, slots {slots}, visible {visible})");
                    }
                }
    }

    [Test]
    public void ScoresSumOverDimensionsInOrderLikeOneMultiplyAddPerRow()
    {
        // s[j] = (((0 + K[0, j]·q[0]) + K[1, j]·q[1]) + ...) in float: the same floats as the per-row form it replaces.
        var random = new Random(9);
        const int dims = 128, slots = 90, visible = 77;
        float[] cache = Enumerable.Range(0, dims * slots).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] query = Enumerable.Range(0, dims).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var scores = new float[visible];
        CachedHeadProducts.Scores(cache, slots, query, scores);
        for (int j = 0; j < visible; j++)
        {
            float expected = 0;
            for (int d = 0; d < dims; d++) expected += cache[d * slots + j] * query[d];
            Assert.That(scores[j], Is.EqualTo(expected), $"slot {j}");
        }
    }
}
