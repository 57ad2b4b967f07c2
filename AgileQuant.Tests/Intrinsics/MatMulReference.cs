namespace AgileQuant.Tests.Intrinsics;

/// <summary>Seeded test data and a double-precision reference for <c>Y = X · Wᵀ</c>.</summary>
internal static class MatMulReference
{
    /// <summary>Uniform values in [-1, 1) from a fixed seed.</summary>
    public static float[] RandomValues(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    /// <summary>
    /// y (tokens, rows) = x (tokens, cols) · wᵀ in double precision, and the per-output error budget of an
    /// FP32 result: <c>1e-6 · √cols · Σ_c |x[t, c] · W[r, c]|</c> (rounding grows like √n for random signs).
    /// </summary>
    public static (double[] Exact, double[] Tolerance) Evaluate(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int tokens, int rows, int cols)
    {
        var exact = new double[tokens * rows];
        var tolerance = new double[tokens * rows];
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double sum = 0, magnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    double product = (double)x[t * cols + c] * w[r * cols + c];
                    sum += product;
                    magnitude += Math.Abs(product);
                }
                exact[t * rows + r] = sum;
                tolerance[t * rows + r] = 1e-6 * Math.Sqrt(cols) * magnitude + 1e-30;
            }
        return (exact, tolerance);
    }

    /// <summary>The error budget of <see cref="Evaluate"/> alone.</summary>
    public static double[] Tolerances(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int tokens, int rows, int cols) =>
        Evaluate(x, w, tokens, rows, cols).Tolerance;

    /// <summary>Asserts |actual − expected| ≤ tolerance element-wise (expected in float).</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double[] tolerance, string what)
    {
        var widened = new double[expected.Length];
        for (int i = 0; i < expected.Length; i++) widened[i] = expected[i];
        AssertClose(actual, widened, tolerance, what);
    }

    /// <summary>Asserts |actual − expected| ≤ tolerance element-wise, naming the first offender.</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double[] tolerance, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < actual.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            if (!(error <= tolerance[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]} ± {tolerance[i]:g3}");
        }
    }
}
