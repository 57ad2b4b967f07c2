using System.Numerics.Tensors;

namespace AgileQuant.Core.Quantization;

/// <summary>Dense double-precision Cholesky routines on row-major (n, n) arrays, scalar reference.</summary>
internal static class CholeskyFactorization
{
    private const double SingularPivotTolerance = 1e-13;

    /// <summary>
    /// Upper-triangular U with <c>H⁻¹ = Uᵀ U</c> (what the GPTQ reference gets from
    /// <c>cholesky(cholesky_inverse(cholesky(H)), upper=True)</c>), without forming H⁻¹: with J the order
    /// reversal, <c>J H J = L' L'ᵀ</c> gives <c>H = R Rᵀ</c> for the upper <c>R = J L' J</c>, so
    /// <c>H⁻¹ = (R⁻¹)ᵀ R⁻¹</c> and <c>U = R⁻¹ = J L'⁻¹ J</c> (the factor with positive diagonal is unique).
    /// Returns false when H is not (numerically) positive definite.
    /// </summary>
    public static bool TryInverseUpperFactor(double[] h, int n, out double[] upper)
    {
        upper = [];
        var l = new double[n * n]; // (n, n): J H J, factored in place into L'
        for (int p = 0; p < n; p++)
            for (int q = 0; q < n; q++)
                l[p * n + q] = h[(n - 1 - p) * n + (n - 1 - q)];
        if (!TryFactorLower(l, n)) return false;
        var t = InvertLowerTransposed(l, n); // T[q, p] = L'⁻¹[p, q]
        upper = new double[n * n]; // (n, n)
        // U[a, b] = L'⁻¹[n-1-a, n-1-b] = T[n-1-b, n-1-a]
        for (int a = 0; a < n; a++)
            for (int b = a; b < n; b++)
                upper[a * n + b] = t[(n - 1 - b) * n + (n - 1 - a)];
        return true;
    }

    /// <summary>In place: lower L with <c>A = L Lᵀ</c>; the strict upper triangle is zeroed.</summary>
    /// <remarks>Row-oriented, <see cref="SharedOperandDot.Width"/> rows at a time so each earlier row is read once per tile.</remarks>
    internal static bool TryFactorLower(double[] a, int n)
    {
        Span<double> dots = stackalloc double[SharedOperandDot.Width];
        for (int i0 = 0; i0 < n; i0 += SharedOperandDot.Width)
        {
            int tile = Math.Min(SharedOperandDot.Width, n - i0);
            // L[i, j] = (A[i, j] - Σ_{k<j} L[i, k] L[j, k]) / L[j, j], for the tile's rows i and the finished columns j < i0
            for (int j = 0; j < i0; j++)
            {
                var rowJ = a.AsSpan(j * n, j);
                if (tile == SharedOperandDot.Width)
                    SharedOperandDot.Dot4(rowJ, a.AsSpan(i0 * n, j), a.AsSpan((i0 + 1) * n, j),
                        a.AsSpan((i0 + 2) * n, j), a.AsSpan((i0 + 3) * n, j), dots);
                else
                    for (int m = 0; m < tile; m++) dots[m] = TensorPrimitives.Dot<double>(a.AsSpan((i0 + m) * n, j), rowJ);
                double ljj = a[j * n + j];
                for (int m = 0; m < tile; m++) a[(i0 + m) * n + j] = (a[(i0 + m) * n + j] - dots[m]) / ljj;
            }
            // the tile's own triangle; L[i, i] = sqrt(A[i, i] - Σ_{k<i} L[i, k]²)
            for (int i = i0; i < i0 + tile; i++)
            {
                for (int j = i0; j <= i; j++)
                {
                    double s = a[i * n + j] - TensorPrimitives.Dot<double>(a.AsSpan(i * n, j), a.AsSpan(j * n, j));
                    if (j < i)
                    {
                        a[i * n + j] = s / a[j * n + j];
                        continue;
                    }
                    // a pivot that cancelled to rounding noise means A is singular in double precision
                    if (!(s > SingularPivotTolerance * Math.Abs(a[i * n + i])) || !double.IsFinite(s)) return false;
                    a[i * n + i] = Math.Sqrt(s);
                }
                a.AsSpan(i * n + i + 1, n - i - 1).Clear();
            }
        }
        return true;
    }

    /// <summary>
    /// T = (L⁻¹)ᵀ (upper), so <c>T[j, i] = L⁻¹[i, j] = -(Σ_{k=j}^{i-1} L[i, k] T[j, k]) / L[i, i]</c>, <c>T[i, i] = 1 / L[i, i]</c>.
    /// </summary>
    /// <remarks>Columns i are done <see cref="SharedOperandDot.Width"/> at a time so each row of T is read once per tile.</remarks>
    private static double[] InvertLowerTransposed(double[] l, int n)
    {
        var t = new double[n * n]; // (n, n)
        Span<double> dots = stackalloc double[SharedOperandDot.Width];
        for (int i0 = 0; i0 < n; i0 += SharedOperandDot.Width)
        {
            int tile = Math.Min(SharedOperandDot.Width, n - i0);
            for (int i = i0; i < i0 + tile; i++) t[i * n + i] = 1.0 / l[i * n + i];
            for (int j = 0; j < i0 + tile; j++)
            {
                // Σ_{k=j}^{i0-1} L[i, k] T[j, k] for the tile's columns i (empty when j is inside the tile)
                int length = Math.Max(i0 - j, 0);
                var rowT = t.AsSpan(j * n + j, length);
                if (tile == SharedOperandDot.Width)
                    SharedOperandDot.Dot4(rowT, l.AsSpan(i0 * n + j, length), l.AsSpan((i0 + 1) * n + j, length),
                        l.AsSpan((i0 + 2) * n + j, length), l.AsSpan((i0 + 3) * n + j, length), dots);
                else
                    for (int m = 0; m < tile; m++) dots[m] = TensorPrimitives.Dot<double>(rowT, l.AsSpan((i0 + m) * n + j, length));
                // the terms with k inside the tile, then T[j, i]
                for (int i = Math.Max(i0, j + 1); i < i0 + tile; i++)
                {
                    double s = dots[i - i0];
                    for (int k = Math.Max(i0, j); k < i; k++) s += l[i * n + k] * t[j * n + k];
                    t[j * n + i] = -s / l[i * n + i];
                }
            }
        }
        return t;
    }
}
