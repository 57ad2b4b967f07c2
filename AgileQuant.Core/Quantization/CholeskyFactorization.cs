using System.Numerics.Tensors;

namespace AgileQuant.Core.Quantization;

/// <summary>Dense double-precision Cholesky routines on row-major (n, n) arrays, scalar reference.</summary>
internal static class CholeskyFactorization
{
    private const double SingularPivotTolerance = 1e-13;

    /// <summary>
    /// Upper-triangular U with <c>H⁻¹ = Uᵀ U</c> (what the GPTQ reference gets from
    /// <c>cholesky(cholesky_inverse(cholesky(H)), upper=True)</c>): H = L Lᵀ, T = L⁻ᵀ, H⁻¹ = T Tᵀ, H⁻¹ = M Mᵀ, U = Mᵀ.
    /// Returns false when H is not positive definite.
    /// </summary>
    public static bool TryInverseUpperFactor(double[] h, int n, out double[] upper)
    {
        upper = [];
        var l = (double[])h.Clone();
        if (!TryFactorLower(l, n)) return false;
        var t = InvertLowerTransposed(l, n);
        // H⁻¹[a, b] = Σ_{k >= max(a,b)} T[a, k] · T[b, k]
        var hInv = new double[n * n]; // (n, n)
        for (int a = 0; a < n; a++)
        {
            for (int b = a; b < n; b++)
            {
                double v = TensorPrimitives.Dot<double>(t.AsSpan(a * n + b, n - b), t.AsSpan(b * n + b, n - b));
                hInv[a * n + b] = v;
                hInv[b * n + a] = v;
            }
        }
        if (!TryFactorLower(hInv, n)) return false;
        upper = new double[n * n]; // (n, n)
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
                upper[j * n + i] = hInv[i * n + j];
        return true;
    }

    /// <summary>In place: lower L with <c>A = L Lᵀ</c>; the strict upper triangle is zeroed.</summary>
    private static bool TryFactorLower(double[] a, int n)
    {
        for (int j = 0; j < n; j++)
        {
            var rowJ = a.AsSpan(j * n, j);
            // L[j, j] = sqrt(A[j, j] - Σ_{k<j} L[j, k]²)
            double d = a[j * n + j] - TensorPrimitives.Dot<double>(rowJ, rowJ);
            // a pivot that cancelled to rounding noise means A is singular in double precision
            if (!(d > SingularPivotTolerance * Math.Abs(a[j * n + j])) || !double.IsFinite(d)) return false;
            double diag = Math.Sqrt(d);
            a[j * n + j] = diag;
            // L[i, j] = (A[i, j] - Σ_{k<j} L[i, k] L[j, k]) / L[j, j]
            for (int i = j + 1; i < n; i++)
                a[i * n + j] = (a[i * n + j] - TensorPrimitives.Dot<double>(a.AsSpan(i * n, j), rowJ)) / diag;
            a.AsSpan(j * n + j + 1, n - j - 1).Clear();
        }
        return true;
    }

    /// <summary>T = (L⁻¹)ᵀ (upper), so <c>T[j, i] = L⁻¹[i, j]</c>; rows of L and T are both read contiguously.</summary>
    private static double[] InvertLowerTransposed(double[] l, int n)
    {
        var t = new double[n * n]; // (n, n)
        for (int i = 0; i < n; i++)
        {
            double lii = l[i * n + i];
            t[i * n + i] = 1.0 / lii;
            // L⁻¹[i, j] = -(Σ_{k=j}^{i-1} L[i, k] L⁻¹[k, j]) / L[i, i]
            for (int j = 0; j < i; j++)
                t[j * n + i] = -TensorPrimitives.Dot<double>(l.AsSpan(i * n + j, i - j), t.AsSpan(j * n + j, i - j)) / lii;
        }
        return t;
    }
}
