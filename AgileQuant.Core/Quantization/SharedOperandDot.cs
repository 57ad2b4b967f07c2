using System.Diagnostics;
using System.Numerics;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// Four dot products against one shared operand, which is read once: the cache-friendly inner step of the
/// Cholesky, triangular-inverse and Hessian loops (each streams a long row past four rows kept in cache).
/// </summary>
internal static class SharedOperandDot
{
    /// <summary>Rows computed together by <see cref="Dot4"/>.</summary>
    public const int Width = 4;

    // result[m] = Σ_k shared[k] · a_m[k], m = 0..3
    public static void Dot4(ReadOnlySpan<double> shared, ReadOnlySpan<double> a0, ReadOnlySpan<double> a1,
        ReadOnlySpan<double> a2, ReadOnlySpan<double> a3, Span<double> result)
    {
        int n = shared.Length;
        Debug.Assert(a0.Length >= n && a1.Length >= n && a2.Length >= n && a3.Length >= n && result.Length >= Width);
        Vector<double> s0 = Vector<double>.Zero, s1 = s0, s2 = s0, s3 = s0;
        int k = 0;
        for (; k <= n - Vector<double>.Count; k += Vector<double>.Count)
        {
            var x = new Vector<double>(shared.Slice(k));
            s0 += x * new Vector<double>(a0.Slice(k));
            s1 += x * new Vector<double>(a1.Slice(k));
            s2 += x * new Vector<double>(a2.Slice(k));
            s3 += x * new Vector<double>(a3.Slice(k));
        }
        double r0 = Vector.Sum(s0), r1 = Vector.Sum(s1), r2 = Vector.Sum(s2), r3 = Vector.Sum(s3);
        for (; k < n; k++)
        {
            double x = shared[k];
            r0 += x * a0[k];
            r1 += x * a1[k];
            r2 += x * a2[k];
            r3 += x * a3[k];
        }
        result[0] = r0;
        result[1] = r1;
        result[2] = r2;
        result[3] = r3;
    }
}
