using System.Numerics.Tensors;

namespace AgileQuant.Core.Runtime;

/// <summary>Element-wise activations not offered by TensorPrimitives.</summary>
internal static class ActivationFunctions
{
    /// <summary>x ← x · ½ · (1 + tanh(√(2/π) · x · (1 + 0.044715 x²))), the constant as BLOOM writes it (0.79788456).</summary>
    public static void GeluTanh(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            x[i] = v * 0.5f * (1f + MathF.Tanh(0.79788456f * v * (1f + 0.044715f * v * v)));
        }
    }

    /// <summary>x ← c · tanh(x / c): Gemma 2's soft-capping of attention scores and final logits (c &gt; 0).</summary>
    public static void SoftCap(Span<float> x, float cap)
    {
        TensorPrimitives.Multiply(x, 1f / cap, x);
        TensorPrimitives.Tanh(x, x);
        TensorPrimitives.Multiply(x, cap, x);
    }

    /// <summary>x ← x · ½ · (1 + erf(x / √2)).</summary>
    public static void GeluErf(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            x[i] = (float)(v * 0.5 * (1.0 + Erf(v / Math.Sqrt(2.0))));
        }
    }

    // erf by the Abramowitz–Stegun 7.1.26-style rational approximation is too coarse (1e-7 abs) for 1e-5
    // embeddings; use the complementary series/continued fraction split at |x| = 2 (double precision).
    internal static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double result;
        if (ax < 2.0)
        {
            // Maclaurin series: erf(x) = 2/√π Σ (−1)^k x^(2k+1) / (k! (2k+1))
            double term = ax, sum = ax, x2 = ax * ax;
            for (int k = 1; k < 60; k++)
            {
                term *= -x2 / k;
                double add = term / (2 * k + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            result = 2.0 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) continued fraction
            double fraction = 0;
            for (int k = 60; k >= 1; k--) fraction = k / 2.0 / (ax + fraction);
            result = 1.0 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + fraction);
        }
        return x < 0 ? -result : result;
    }
}
