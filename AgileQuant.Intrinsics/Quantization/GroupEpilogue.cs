namespace AgileQuant.Intrinsics.Quantization;

/// <summary>The float epilogue every integer kernel and its scalar twin share, so their outputs agree bit for bit.</summary>
internal static class GroupEpilogue
{
    /// <summary><c>y = s_x · Σ_g s_w[g] · acc[g]</c>, summed in group order.</summary>
    public static float Dequantize(float activationScale, ReadOnlySpan<float> weightScales, ReadOnlySpan<int> accumulators)
    {
        float sum = 0f;
        for (int g = 0; g < accumulators.Length; g++) sum += weightScales[g] * accumulators[g];
        return activationScale * sum;
    }

    /// <summary>
    /// <c>y = s_x · Σ_g (s_w[g] · s_x[g]) · acc[g]</c>, summed in group order (a multiply, a multiply, then an add per group):
    /// per-group activation scales s_x[g]; with all of them 1 it equals the overload without them bit for bit.
    /// </summary>
    public static float Dequantize(float activationScale, ReadOnlySpan<float> weightScales, ReadOnlySpan<float> activationGroupScales, ReadOnlySpan<int> accumulators)
    {
        float sum = 0f;
        for (int g = 0; g < accumulators.Length; g++) sum += weightScales[g] * activationGroupScales[g] * accumulators[g];
        return activationScale * sum;
    }
}
