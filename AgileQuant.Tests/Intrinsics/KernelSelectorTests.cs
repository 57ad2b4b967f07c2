using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

public sealed class KernelSelectorTests
{
    [Test]
    public void AutoPicksTheBestSupportedIsa()
    {
        KernelSet set = KernelSelector.Create(new KernelOptions { Threads = 2 });
        Assert.That(set.Isa, Is.EqualTo(KernelSelector.BestSupported));
        Assert.That(set.Threads, Is.EqualTo(2));
        Assert.That(KernelSelector.IsSupported(set.Isa), Is.True);
    }

    [Test]
    public void DefaultThreadCountIsTheProcessorCount() =>
        Assert.That(KernelSelector.Create().Threads, Is.EqualTo(Environment.ProcessorCount));

    [Test]
    public void ScalarCanAlwaysBePinned()
    {
        KernelSet set = KernelSelector.Create(new KernelOptions { Preference = KernelPreference.Scalar });
        Assert.That(set.Isa, Is.EqualTo(KernelPreference.Scalar));
        Assert.That(set.KernelFor(new Fp32Matrix(new float[4], 2, 2)), Is.TypeOf<ScalarFp32Kernel>());
    }

    [TestCaseSource(typeof(CatalogKernels), nameof(CatalogKernels.SimdEntries))]
    public void PinnedIsaIsUsedOrRefused(KernelPreference preference)
    {
        var options = new KernelOptions { Preference = preference, Threads = 1 };
        if (!KernelSelector.IsSupported(preference))
        {
            Assert.Throws<PlatformNotSupportedException>(() => KernelSelector.Create(options));
            return;
        }
        KernelSet set = KernelSelector.Create(options);
        Assert.That(set.Isa, Is.EqualTo(preference));
        // The AVX-512 set keeps the AVX2 FP32 kernel; its integer kernels carry the ISA's name.
        string isa = preference.ToString().ToLowerInvariant();
        Assert.That(set.KernelFor(QuantizedKernelTests.Int4Weights(9, 64, groupSize: 32, asymmetric: true, seed: 1)).Name, Does.EndWith(isa).Or.Contain(isa + "-"));
        Assert.That(set.KernelFor(QuantizedKernelTests.Int8Weights(9, 64, seed: 2)).Name, Does.EndWith(isa).Or.Contain(isa + "-"));
    }

    [Test]
    public void AutoPrefersAvx512WhereTheCpuHasIt()
    {
        // DOTNET_EnableAVX512=0 turns this into the AVX2 case; CI runs the kernel tests both ways.
        KernelPreference expected = Avx512Int4KernelSupported() ? KernelPreference.Avx512
            : KernelSelector.IsSupported(KernelPreference.Avx2) ? KernelPreference.Avx2
            : KernelSelector.IsSupported(KernelPreference.AdvSimd) ? KernelPreference.AdvSimd
            : KernelPreference.Scalar;
        Assert.That(KernelSelector.BestSupported, Is.EqualTo(expected));
    }

    private static bool Avx512Int4KernelSupported() =>
        System.Runtime.Intrinsics.X86.Avx512BW.IsSupported && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
        && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;

    [Test]
    public void RejectsNegativeThreadsAndUndefinedPreference()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelSelector.Create(new KernelOptions { Threads = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelSelector.Create(new KernelOptions { Preference = (KernelPreference)99 }));
    }

    [Test]
    public void KernelSetDispatchesFp32AndMatchesScalar()
    {
        const int tokens = 3, cols = 70, rows = 21;
        float[] x = MatMulReference.RandomValues(tokens * cols, 1), w = MatMulReference.RandomValues(rows * cols, 2);
        var matrix = new Fp32Matrix(w, rows, cols);
        var expected = new float[tokens * rows];
        new ScalarFp32Kernel().MatMul(matrix, x, expected, tokens);
        KernelSet set = KernelSelector.Create(new KernelOptions { Threads = 2 });
        var actual = new float[tokens * rows];
        set.MatMul(matrix, x, actual, tokens);
        Assert.That(set.Supports(matrix), Is.True);
        MatMulReference.AssertClose(actual, expected, MatMulReference.Tolerances(x, w, tokens, rows, cols), set.Name);
    }

    [TestCase(8)]
    [TestCase(4)]
    public void KernelSetMultipliesEveryFormatLikeTheScalarSet(int bits)
    {
        const int tokens = 5, cols = 172, rows = 23;
        float[] x = MatMulReference.RandomValues(tokens * cols, 3);
        PackedInt4Matrix w4 = QuantizedKernelTests.Int4Weights(rows, cols, groupSize: 32, asymmetric: true, seed: 4);
        Int8RowMatrix w8 = QuantizedKernelTests.Int8Weights(rows, cols, seed: 5);
        (IWeightMatrix W, Func<int, int, float> Weight)[] formats = [(w4, w4.Dequantize), (w8, (r, c) => w8.Scales[r] * w8.Code(r, c))];
        KernelSet scalar = KernelSelector.Create(new KernelOptions { Preference = KernelPreference.Scalar, ActivationBits = bits });
        KernelSet best = KernelSelector.Create(new KernelOptions { Threads = 2, ActivationBits = bits });
        foreach ((IWeightMatrix w, Func<int, int, float> weight) in formats)
        {
            var expected = new float[tokens * rows];
            var actual = new float[tokens * rows];
            scalar.MatMul(w, x, expected, tokens);
            best.MatMul(w, x, actual, tokens);
            MatMulReference.AssertClose(actual, expected, KernelSelfTest.QuantizedTolerance(x, tokens, bits, rows, cols, weight), $"{best.KernelFor(w).Name} vs {scalar.KernelFor(w).Name}");
            Assert.That(best.KernelFor(w).Name, Does.StartWith(w is Int8RowMatrix ? $"w8a{bits}" : $"w4a{bits}"));
        }
    }

    [Test]
    public void RejectsOtherActivationBits() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelSelector.Create(new KernelOptions { ActivationBits = 6 }));

    [Test]
    public void SelfTestPassesForEverySupportedKernel()
    {
        IReadOnlyList<KernelSelfTestResult> results = KernelSelfTest.Run(threads: 2);
        Assert.That(results.Where(r => !r.Passed).Select(r => $"{r.Kernel} {r.Shape}: {r.MaxError} > {r.Tolerance}"), Is.Empty);
        int expectedKernels = KernelSelector.BestSupported == KernelPreference.Scalar ? 0 : 5;
        Assert.That(results.Select(r => r.Kernel).Distinct().Count(), Is.GreaterThanOrEqualTo(expectedKernels));
    }
}
