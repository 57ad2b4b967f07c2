using AgileQuant.Core.Encoder;

namespace AgileQuant.Tests.Core.Encoder;

[TestFixture]
public sealed class EmbeddingComparisonTests
{
    [Test]
    public void CosineOfHandPickedVectors()
    {
        Assert.That(EmbeddingComparison.Cosine([1f, 0f], [0f, 2f]), Is.EqualTo(0.0).Within(1e-12));
        Assert.That(EmbeddingComparison.Cosine([1f, 1f], [2f, 2f]), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(EmbeddingComparison.Cosine([3f, 4f], [4f, 3f]), Is.EqualTo(24.0 / 25.0).Within(1e-12));
    }

    [Test]
    public void NearestNeighboursAndOverlapOnPointsOnACircle()
    {
        // unit vectors at 0°, 10°, 30°, 100°, 180°: neighbours by angle
        float[][] points = new[] { 0.0, 10, 30, 100, 180 }.Select(d => new[] { (float)Math.Cos(d * Math.PI / 180), (float)Math.Sin(d * Math.PI / 180) }).ToArray();
        int[][] nn = EmbeddingComparison.NearestNeighbours(points, 2);
        Assert.That(nn[0], Is.EqualTo(new[] { 1, 2 }));
        Assert.That(nn[3], Is.EqualTo(new[] { 2, 4 }));
        Assert.That(nn[4], Is.EqualTo(new[] { 3, 2 }));
        // moving point 4 to 5° changes its neighbours to {0, 1} and makes it a neighbour of 0 and 1
        float[][] moved = points.ToArray();
        moved[4] = [(float)Math.Cos(5 * Math.PI / 180), (float)Math.Sin(5 * Math.PI / 180)];
        EmbeddingAgreement a = EmbeddingComparison.Compare(moved, points, k: 2);
        Assert.That(a.MinCosine, Is.EqualTo(Math.Cos(175 * Math.PI / 180)).Within(1e-6));
        Assert.That(a.MeanCosine, Is.EqualTo((4 + Math.Cos(175 * Math.PI / 180)) / 5).Within(1e-6));
        // new neighbours: 0 → {4,1} (½ of {1,2}), 1 → {4,0} (½ of {0,2}), 2 → {1,4} (½ of {1,0}), 3 → {2,1} (½ of {2,4}), 4 → {0,1} (0 of {3,2})
        Assert.That(a.NeighbourOverlap, Is.EqualTo((0.5 + 0.5 + 0.5 + 0.5 + 0) / 5).Within(1e-12));
    }

    [Test]
    public void PoolingAveragesRowsAndNormalises()
    {
        var mean = new float[2];
        SentencePooling.MeanPool([1f, 2f, 3f, 6f], 2, mean);
        Assert.That(mean, Is.EqualTo(new[] { 2f, 4f }));
        SentencePooling.Normalize(mean);
        Assert.That(mean[0], Is.EqualTo(1 / Math.Sqrt(5)).Within(1e-7));
        Assert.That(mean[1], Is.EqualTo(2 / Math.Sqrt(5)).Within(1e-7));
    }
}

[TestFixture]
public sealed class GeluErfApproximationTests
{
    [Test]
    public void MatchesTheDoublePrecisionErfWithinTheApproximationBound()
    {
        float[] x = Enumerable.Range(-2000, 4001).Select(i => i / 200f).ToArray(); // −10 … 10
        float[] y = (float[])x.Clone();
        AgileQuant.Core.Encoder.GeluErfApproximation.Apply(y, new float[x.Length], new float[x.Length]);
        for (int i = 0; i < x.Length; i++)
        {
            // reference: x·½·(1 + erf(x/√2)) with the double-precision series/continued fraction
            double expected = x[i] * 0.5 * (1 + AgileQuant.Core.Runtime.ActivationFunctions.Erf(x[i] / Math.Sqrt(2)));
            Assert.That(y[i], Is.EqualTo(expected).Within(1e-6 * Math.Max(1, Math.Abs(x[i]))), $"x = {x[i]}");
        }
    }
}
