using System.Numerics.Tensors;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// Vectorised GELU with erf: <c>x ← x · ½ · (1 + erf(x/√2))</c>, erf by Abramowitz &amp; Stegun 7.1.26
/// (<c>erf(u) = 1 − (a₁t + a₂t² + a₃t³ + a₄t⁴ + a₅t⁵)·e^(−u²)</c>, <c>t = 1/(1 + p·u)</c>, u ≥ 0, |error| ≤ 1.5·10⁻⁷),
/// evaluated with TensorPrimitives over whole spans: the series of the scalar reference costs tens of divisions per element
/// and dominated the encoder's time.
/// </summary>
internal static class GeluErfApproximation
{
    private const float P = 0.3275911f;
    private const float A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;

    /// <summary>x ← gelu_erf(x); <paramref name="scratchU"/> and <paramref name="scratchT"/> hold at least x.Length floats.</summary>
    public static void Apply(Span<float> x, Span<float> scratchU, Span<float> scratchT)
    {
        int n = x.Length;
        Span<float> u = scratchU[..n], t = scratchT[..n];
        // u = |x| / √2
        TensorPrimitives.Abs(x, u);
        TensorPrimitives.Multiply(u, 0.70710678f, u);
        // t = 1 / (1 + p·u)
        TensorPrimitives.Multiply(u, P, t);
        TensorPrimitives.Add(t, 1f, t);
        TensorPrimitives.Reciprocal(t, t);
        // u ← e^(−u²)
        TensorPrimitives.Multiply(u, u, u);
        TensorPrimitives.Negate(u, u);
        TensorPrimitives.Exp(u, u);
        // poly(t) = t·(a₁ + t·(a₂ + t·(a₃ + t·(a₄ + t·a₅))))
        for (int i = 0; i < n; i++)
        {
            float ti = t[i];
            float p = ti * (A1 + ti * (A2 + ti * (A3 + ti * (A4 + ti * A5))));
            // ½(1 + sign(x)·erf(|x|/√2)) with erf = 1 − p·e
            float erf = 1f - p * u[i];
            float xi = x[i];
            x[i] = xi * 0.5f * (1f + (xi < 0 ? -erf : erf));
        }
    }
}
