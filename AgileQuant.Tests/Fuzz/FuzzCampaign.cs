namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// What every fuzz test does around <see cref="FuzzRunner.Run"/>: the iteration count (overridable with
/// <c>AGILEQUANT_FUZZ_ITERATIONS</c> for a long soak), printing the figures, saving failing inputs, and
/// asserting that nothing crashed or hung.
/// </summary>
public static class FuzzCampaign
{
    /// <summary>Mutated inputs per reader in CI.</summary>
    public const int DefaultIterations = 20_000;

    /// <summary>Per-input limit: an input taking longer counts as a hang.</summary>
    public static readonly TimeSpan PerInputLimit = TimeSpan.FromSeconds(5);

    /// <summary><c>AGILEQUANT_FUZZ_ITERATIONS</c> when set to a positive number, else <paramref name="fallback"/>.</summary>
    public static int Iterations(int fallback = DefaultIterations) =>
        int.TryParse(Environment.GetEnvironmentVariable("AGILEQUANT_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : fallback;

    /// <summary>Prints the report under <paramref name="reader"/>, saves failing inputs to the test directory and asserts there are none.</summary>
    public static void Check(string reader, FuzzReport report, int topKinds = 25)
    {
        TestContext.Out.WriteLine($"[fuzz] {reader}: {report.InputsTried} inputs, {report.DistinctMessages} distinct messages, " +
            $"max {report.MaxInputTime.TotalMilliseconds:F1} ms per input, {report.Elapsed.TotalSeconds:F1} s in all");
        TestContext.Out.WriteLine(report.Describe(topKinds));
        foreach (FuzzFailure failure in report.Failures)
        {
            string file = Path.Combine(TestContext.CurrentContext.WorkDirectory,
                $"fuzz-failure-{TestContext.CurrentContext.Test.MethodName}-{failure.Index}.bin");
            File.WriteAllBytes(file, failure.Input);
            TestContext.Out.WriteLine($"saved failing input {failure.Index} to {file}");
        }
        Assert.That(report.Failures, Is.Empty, report.Describe(0));
    }
}
