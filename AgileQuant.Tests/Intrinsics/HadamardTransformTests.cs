using System.Numerics;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Rotation;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The known Hadamard matrices and the normalized Hadamard transform (QuaRot's rotation) against independent references.</summary>
[TestFixture]
public sealed class HadamardTransformTests
{
    /// <summary>Every table order: entries ±1 and H·Hᵀ = m·I, by an integer product written here.</summary>
    [Test]
    public void EveryKnownOrderIsAHadamardMatrix()
    {
        Assert.That(HadamardMatrices.Orders, Is.EqualTo(new[] { 12, 20, 28, 36, 44, 52, 60, 108, 140, 156, 172 }));
        foreach (int m in HadamardMatrices.Orders)
        {
            sbyte[] h = HadamardMatrices.Get(m).ToArray();
            Assert.That(h, Has.Length.EqualTo(m * m));
            Assert.That(h.All(v => v is 1 or -1), Is.True, $"order {m}: entries are ±1");
            for (int i = 0; i < m; i++)
                for (int j = 0; j < m; j++)
                {
                    long dot = 0;
                    for (int c = 0; c < m; c++) dot += h[i * m + c] * h[j * m + c];
                    if (dot != (i == j ? m : 0)) Assert.Fail($"order {m}: (H·Hᵀ)[{i}, {j}] = {dot}, expected {(i == j ? m : 0)}");
                }
        }
    }

    [TestCase(64, 1, 64)]
    [TestCase(1, 1, 1)]
    [TestCase(172, 172, 1)]
    [TestCase(11008, 172, 64)]
    [TestCase(40, 20, 2)]
    [TestCase(96, 12, 8)]
    [TestCase(688, 172, 4)]
    [TestCase(100, 0, 0)] // 4·25: no order 100 or 25·4 here
    [TestCase(86, 0, 0)]  // 2·43: not a multiple of 4
    [TestCase(0, 0, 0)]
    public void WidthsSplitIntoAKnownOrderTimesAPowerOfTwo(int n, int order, int powerOfTwo)
    {
        Assert.That(HadamardMatrices.Split(n), Is.EqualTo((order, powerOfTwo)));
        Assert.That(HadamardTransform.IsSupported(n), Is.EqualTo(order != 0));
    }

    [Test]
    public void AnUnsupportedWidthIsRefusedWithTheSupportedOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => HadamardTransform.Transform(new float[100]))!;
        Assert.That(e.Message, Does.Contain("100").And.Contain("172"));
    }

    /// <summary>
    /// The transform equals (H_m ⊗ H_K)·x/√n written densely in doubles, with H_K Sylvester's matrix
    /// (H_K[i, j] = (−1)^popcount(i AND j)) and H_m from the table, so the butterflies and the row mixing are checked
    /// against the definition, not against each other.
    /// </summary>
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(8)]
    [TestCase(64)]
    [TestCase(512)]
    [TestCase(12)]
    [TestCase(24)]
    [TestCase(172)]
    [TestCase(344)]
    [TestCase(28 * 16)]
    [TestCase(36 * 4)]
    [TestCase(52 * 8)]
    [TestCase(156)]
    public void TransformEqualsTheDenseKroneckerProduct(int n)
    {
        (int m, int k) = HadamardMatrices.Split(n);
        sbyte[] hm = m == 1 ? [1] : HadamardMatrices.Get(m).ToArray();
        var random = new Random(n);
        float[] x = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        x[n / 3] = 25f; // an outlier channel
        var expected = new double[n];
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int j = 0; j < n; j++)
            {
                int sylvester = BitOperations.PopCount((uint)(i % k & j % k)) % 2 == 0 ? 1 : -1;
                sum += hm[i / k * m + j / k] * sylvester * (double)x[j];
            }
            expected[i] = sum / Math.Sqrt(n);
        }
        float[] actual = x.ToArray(), scalar = x.ToArray();
        HadamardTransform.Transform(actual);
        HadamardTransform.TransformScalar(scalar);
        for (int i = 0; i < n; i++)
        {
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(1e-5 * (1 + Math.Sqrt(n))), $"n {n}, output {i}");
            Assert.That(scalar[i], Is.EqualTo(expected[i]).Within(1e-5 * (1 + Math.Sqrt(n))), $"n {n}, output {i} (scalar twin)");
        }
        // orthogonal: the norm is kept and the outlier is spread (no output above 25/√(n)·(outlier share) + the rest)
        Assert.That(Math.Sqrt(actual.Sum(v => (double)v * v)), Is.EqualTo(Math.Sqrt(x.Sum(v => (double)v * v))).Within(1e-4 * Math.Sqrt(n)));
    }

    /// <summary>The vectorized path and its scalar twin perform the same additions per element: equal bit for bit.</summary>
    [Test]
    public void VectorizedTransformEqualsItsScalarTwinExactly()
    {
        foreach (int n in new[] { 4, 8, 16, 32, 128, 4096, 12, 20, 40, 80, 172, 344, 688, 11008, 60 * 32, 140 * 8, 108 * 2, 156 * 16 })
        {
            var random = new Random(n + 17);
            float[] x = Enumerable.Range(0, 3 * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            float[] simd = x.ToArray(), scalar = x.ToArray();
            HadamardTransform.TransformRows(simd, n);
            for (int r = 0; r < 3; r++) HadamardTransform.TransformScalar(scalar.AsSpan(r * n, n));
            Assert.That(simd, Is.EqualTo(scalar), $"n {n} ({HadamardTransform.Path})");
        }
    }

    [Test]
    public void SelfTestRunsTheVectorizedTransform()
    {
        IReadOnlyList<KernelSelfTestResult> results = KernelSelfTest.Run(threads: 1);
        KernelSelfTestResult[] hadamard = results.Where(r => r.Kernel.StartsWith("hadamard-", StringComparison.Ordinal)).ToArray();
        if (HadamardTransform.Path == "scalar") Assert.That(hadamard, Is.Empty);
        else
        {
            Assert.That(hadamard, Is.Not.Empty);
            Assert.That(hadamard.Where(r => !r.Passed).Select(r => r.Shape), Is.Empty);
            Assert.That(KernelSelfTest.MissingPaths(results).Where(p => p.StartsWith("hadamard", StringComparison.Ordinal)), Is.Empty);
        }
    }
}
