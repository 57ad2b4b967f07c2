namespace AgileQuant.Tests;

/// <summary>Logit helpers for the model-level tests, where a NaN must fail (the library's sampler skips NaN).</summary>
public static class TestLogits
{
    /// <summary>The index of the largest logit (the first of equals); fails the test when any logit is NaN.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (float.IsNaN(logits[i])) Assert.Fail($"logit {i} of {logits.Length} is NaN");
            if (logits[i] > logits[best]) best = i;
        }
        return best;
    }
}
