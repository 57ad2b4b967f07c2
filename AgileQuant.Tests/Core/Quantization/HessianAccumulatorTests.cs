using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class HessianAccumulatorTests
{
    [Test]
    public void TwoRows_GiveTwoXtXOverN()
    {
        // X = [[1, 2], [3, 0]]: XᵀX = [[10, 2], [2, 4]], n = 2 -> H = 2/2 · XᵀX
        var h = new HessianAccumulator(2);
        h.Add([1f, 2f, 3f, 0f], 2);
        Assert.That(h.SampleCount, Is.EqualTo(2));
        Assert.That(h.ToMatrix(), Is.EqualTo(new double[] { 10, 2, 2, 4 }));
    }

    [Test]
    public void BatchesAccumulateLikeOneBatch()
    {
        var x = QuantizationTestData.Gaussian(7 * 5, seed: 3); // (7, 5)
        var whole = new HessianAccumulator(5);
        whole.Add(x, 7);
        var parts = new HessianAccumulator(5);
        parts.Add(x.AsSpan(0, 3 * 5), 3);
        parts.Add(x.AsSpan(3 * 5), 4);
        Assert.That(parts.ToMatrix(), Is.EqualTo(whole.ToMatrix()).Within(1e-12));
    }

    [Test]
    public void ManyChunksAndOddWidth_MatchNaiveSum()
    {
        const int n = 150, cols = 11; // several token chunks, a partial tile of channels
        var x = QuantizationTestData.Gaussian(n * cols, seed: 4); // (n, cols)
        var h = new HessianAccumulator(cols);
        h.Add(x, n);
        var actual = h.ToMatrix();
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
            {
                double expected = 0;
                for (int t = 0; t < n; t++) expected += (double)x[t * cols + i] * x[t * cols + j];
                Assert.That(actual[i * cols + j], Is.EqualTo(2.0 * expected / n).Within(1e-12), $"H[{i}, {j}]");
            }
    }

    [Test]
    public void BadInput_IsRefused()
    {
        var h = new HessianAccumulator(3);
        Assert.Throws<ArgumentException>(() => h.Add(new float[5], 2));
        var ex = Assert.Throws<NonFiniteValueException>(() => h.Add([0f, 1f, 2f, 3f, float.NaN, 5f], 2));
        Assert.That((ex!.Row, ex.Column), Is.EqualTo((1, 1)));
        Assert.That(h.SampleCount, Is.Zero);
    }
}

public class CholeskyFactorizationTests
{
    [Test]
    public void InverseUpperFactor_TwoByTwo_HandComputed()
    {
        // H = [[4, 2], [2, 2]] -> H⁻¹ = [[0.5, -0.5], [-0.5, 1]] = UᵀU with U = [[√½, -√½], [0, √½]]
        Assert.That(CholeskyFactorization.TryInverseUpperFactor([4, 2, 2, 2], 2, out var u), Is.True);
        double r = Math.Sqrt(0.5);
        Assert.That(u, Is.EqualTo(new[] { r, -r, 0, r }).Within(1e-12));
    }

    [Test]
    public void InverseUpperFactor_RandomSpd_SatisfiesUtUH_EqualsIdentity()
    {
        const int n = 37;
        var x = QuantizationTestData.Gaussian(60 * n, seed: 5); // (60, n)
        var acc = new HessianAccumulator(n);
        acc.Add(x, 60);
        var h = acc.ToMatrix();
        Assert.That(CholeskyFactorization.TryInverseUpperFactor(h, n, out var u), Is.True);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                Assert.That(u[i * n + j], Is.Zero, "U must be upper triangular");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                // (Uᵀ U H)[i, j]
                double sum = 0;
                for (int k = 0; k < n; k++)
                {
                    double hinv = 0;
                    for (int m = 0; m < n; m++) hinv += u[m * n + i] * u[m * n + k];
                    sum += hinv * h[k * n + j];
                }
                Assert.That(sum, Is.EqualTo(i == j ? 1.0 : 0.0).Within(1e-9), $"({i}, {j})");
            }
    }

    [TestCase(1)]
    [TestCase(4)]
    [TestCase(13)]
    public void FactorLower_ReproducesTheMatrix(int n)
    {
        var x = QuantizationTestData.Gaussian((n + 5) * n, seed: 6); // (n + 5, n)
        var acc = new HessianAccumulator(n);
        acc.Add(x, n + 5);
        var a = acc.ToMatrix();
        var l = (double[])a.Clone();
        Assert.That(CholeskyFactorization.TryFactorLower(l, n), Is.True);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int k = 0; k < n; k++) sum += l[i * n + k] * l[j * n + k];
                Assert.That(sum, Is.EqualTo(a[i * n + j]).Within(1e-12 * (1 + Math.Abs(a[i * n + j]))), $"(L Lᵀ)[{i}, {j}]");
                if (j > i) Assert.That(l[i * n + j], Is.Zero);
            }
    }

    [Test]
    public void NotPositiveDefinite_ReturnsFalse()
    {
        Assert.That(CholeskyFactorization.TryInverseUpperFactor([1, 2, 2, 1], 2, out _), Is.False);
    }
}
