using System.Text.Json;
using AgileQuant.Cli.Commands;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// <c>agilequant selftest</c>: its model check's reference is llama2.c's (the shared golden file, not our own output), it
/// fails a forward pass that is off or NaN, it fails when no SIMD kernel ran, and its summary counts what it checked.
/// </summary>
public sealed class SelfTestCommandTests
{
    [Test]
    public void ModelReferenceIsLlama2cGolden()
    {
        JsonElement golden = JsonDocument.Parse(File.ReadAllText(SharedAssets.Require("assets/golden/stories260K_once_upon_a_time.json"))).RootElement;
        JsonElement[] positions = golden.GetProperty("positions").EnumerateArray().ToArray();
        for (int p = 0; p < SelfTestModelCheck.Reference.Length; p++)
        {
            (int input, int argMax, double maxLogit, double[] first8) = SelfTestModelCheck.Reference[p];
            Assert.That(input, Is.EqualTo(positions[p].GetProperty("input").GetInt32()), $"input at {p}");
            Assert.That(argMax, Is.EqualTo(positions[p].GetProperty("argmax").GetInt32()), $"argmax at {p}");
            Assert.That(maxLogit, Is.EqualTo(positions[p].GetProperty("logit_argmax").GetDouble()), $"max logit at {p}");
            Assert.That(first8, Is.EqualTo(positions[p].GetProperty("logits_first8").EnumerateArray().Select(e => e.GetDouble()).ToArray()), $"first 8 logits at {p}");
        }
    }

    [Test]
    public void ModelCheckPassesOnTheScalarKernelsAndFailsOnAWrongOrNaNKernel()
    {
        string model = AgileQuantProcess.Stories260K;
        Assert.That(SelfTestModelCheck.Run(model, new ScalarFp32Kernel()).Passed, Is.True, "the scalar FP32 kernels match llama2.c");
        Assert.That(SelfTestModelCheck.Run(model, new ScaledKernel(new ScalarFp32Kernel(), 1.0001f)).Passed, Is.False, "logits off by 1e-4 relative");
        (bool passed, _, string detail) = SelfTestModelCheck.Run(model, new ScaledKernel(new ScalarFp32Kernel(), float.NaN));
        Assert.That(passed, Is.False, "NaN logits");
        Assert.That(detail, Does.Contain("NaN").Or.Contain("argmax"));
    }

    [Test]
    public void NoSimdKernelIsAFailure()
    {
        Assert.That(KernelSelfTest.MissingPaths([]), Has.Some.Contains("no SIMD kernel"));
        IReadOnlyList<KernelSelfTestResult> run = KernelSelfTest.Run(threads: 1);
        Assert.That(KernelSelfTest.MissingPaths(run), Is.Empty, "every path this CPU offers ran");
        if (run.Count > 0)
        {
            string dropped = run[^1].Kernel;
            Assert.That(KernelSelfTest.MissingPaths(run.Where(r => r.Kernel != dropped).ToList()), Is.Not.Empty, $"without {dropped}");
        }
    }

    [Test]
    public void CommandExitsNonZeroWithoutSimdKernelsAndCountsTheModelCheck()
    {
        (int exitCode, string stdout, _) = AgileQuantProcess.Run(["selftest", "--threads", "1"], null, 600_000);
        bool simd = KernelCatalog.BestSupported != KernelCatalog.Scalar;
        Assert.That(stdout, Does.Contain("PASS  stories260K forward"));
        Assert.That(stdout, Does.Contain("paths run: "));
        Assert.That(exitCode, Is.EqualTo(simd ? 0 : 3), stdout);
        if (!simd) Assert.That(stdout, Does.Match(@"selftest: \d+ passed, [1-9]\d* failed"));
    }

    /// <summary>A kernel whose outputs are the inner kernel's times a factor (a fault for the model check to catch).</summary>
    private sealed class ScaledKernel(IMatMulKernel inner, float factor) : IMatMulKernel
    {
        public string Name => inner.Name + " (scaled)";

        public bool Supports(IWeightMatrix weights) => inner.Supports(weights);

        public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens)
        {
            inner.MatMul(weights, x, y, tokens);
            if (weights.Rows == 512) foreach (ref float v in y) v *= factor; // the classifier (vocab 512) only
        }
    }
}
