using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2+FMA FP32 micro-kernel: a (≤6 tokens) × 16 rows tile held in up to 12 ymm accumulators; per
/// column k it loads 16 panel floats (2 ymm), broadcasts packed x[k, t] and issues 2 FMAs per token.
/// </summary>
internal readonly unsafe struct Avx2Fp32MicroKernel : IFp32MicroKernel
{
    public static int MaxTokens => 6;

    public static void Tile(float* x, float* panel, int depth, float* y, nint yStride, int tokens, bool accumulate)
    {
        switch (tokens)
        {
            case 6: Tile<SixTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 5: Tile<FiveTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 4: Tile<FourTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 3: Tile<ThreeTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 2: Tile<TwoTokens>(x, panel, depth, y, yStride, accumulate); break;
            default: SingleToken(x, panel, depth, y, accumulate); break;
        }
    }

    // y[t, 0..16) (+)= Σ_k x[k, t] · panel[k, 0..16), t < N
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<N>(float* x, float* panel, int depth, float* y, nint yStride, bool accumulate)
        where N : struct, ITokenCount
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        if (accumulate)
        {
            c00 = X86.Avx.LoadVector256(y); c01 = X86.Avx.LoadVector256(y + 8);
            if (N.Value > 1) { c10 = X86.Avx.LoadVector256(y + yStride); c11 = X86.Avx.LoadVector256(y + yStride + 8); }
            if (N.Value > 2) { c20 = X86.Avx.LoadVector256(y + 2 * yStride); c21 = X86.Avx.LoadVector256(y + 2 * yStride + 8); }
            if (N.Value > 3) { c30 = X86.Avx.LoadVector256(y + 3 * yStride); c31 = X86.Avx.LoadVector256(y + 3 * yStride + 8); }
            if (N.Value > 4) { c40 = X86.Avx.LoadVector256(y + 4 * yStride); c41 = X86.Avx.LoadVector256(y + 4 * yStride + 8); }
            if (N.Value > 5) { c50 = X86.Avx.LoadVector256(y + 5 * yStride); c51 = X86.Avx.LoadVector256(y + 5 * yStride + 8); }
        }
        int k = 0;
        for (; k + 2 <= depth; k += 2, x += 2 * N.Value, panel += 32) // two columns per trip: less loop overhead per FMA
        {
            Step<N>(x, panel, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            Step<N>(x + N.Value, panel + 16, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
        }
        if (k < depth) Step<N>(x, panel, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
        X86.Avx.Store(y, c00); X86.Avx.Store(y + 8, c01);
        if (N.Value > 1) { X86.Avx.Store(y + yStride, c10); X86.Avx.Store(y + yStride + 8, c11); }
        if (N.Value > 2) { X86.Avx.Store(y + 2 * yStride, c20); X86.Avx.Store(y + 2 * yStride + 8, c21); }
        if (N.Value > 3) { X86.Avx.Store(y + 3 * yStride, c30); X86.Avx.Store(y + 3 * yStride + 8, c31); }
        if (N.Value > 4) { X86.Avx.Store(y + 4 * yStride, c40); X86.Avx.Store(y + 4 * yStride + 8, c41); }
        if (N.Value > 5) { X86.Avx.Store(y + 5 * yStride, c50); X86.Avx.Store(y + 5 * yStride + 8, c51); }
    }

    // c[t, 0..16) += x[t] · panel[0..16), t < N: one column k of the tile
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<N>(float* x, float* panel,
        ref Vector256<float> c00, ref Vector256<float> c01, ref Vector256<float> c10, ref Vector256<float> c11,
        ref Vector256<float> c20, ref Vector256<float> c21, ref Vector256<float> c30, ref Vector256<float> c31,
        ref Vector256<float> c40, ref Vector256<float> c41, ref Vector256<float> c50, ref Vector256<float> c51)
        where N : struct, ITokenCount
    {
        Vector256<float> w0 = X86.Avx.LoadVector256(panel);
        Vector256<float> w1 = X86.Avx.LoadVector256(panel + 8);
        Vector256<float> b = X86.Avx.BroadcastScalarToVector256(x);
        c00 = X86.Fma.MultiplyAdd(b, w0, c00); c01 = X86.Fma.MultiplyAdd(b, w1, c01);
        if (N.Value > 1) { b = X86.Avx.BroadcastScalarToVector256(x + 1); c10 = X86.Fma.MultiplyAdd(b, w0, c10); c11 = X86.Fma.MultiplyAdd(b, w1, c11); }
        if (N.Value > 2) { b = X86.Avx.BroadcastScalarToVector256(x + 2); c20 = X86.Fma.MultiplyAdd(b, w0, c20); c21 = X86.Fma.MultiplyAdd(b, w1, c21); }
        if (N.Value > 3) { b = X86.Avx.BroadcastScalarToVector256(x + 3); c30 = X86.Fma.MultiplyAdd(b, w0, c30); c31 = X86.Fma.MultiplyAdd(b, w1, c31); }
        if (N.Value > 4) { b = X86.Avx.BroadcastScalarToVector256(x + 4); c40 = X86.Fma.MultiplyAdd(b, w0, c40); c41 = X86.Fma.MultiplyAdd(b, w1, c41); }
        if (N.Value > 5) { b = X86.Avx.BroadcastScalarToVector256(x + 5); c50 = X86.Fma.MultiplyAdd(b, w0, c50); c51 = X86.Fma.MultiplyAdd(b, w1, c51); }
    }

    // y[0..16) (+)= Σ_k x[k] · panel[k, 0..16): four independent FMA chains per half hide FMA latency
    // (decode streams the panel from DRAM; this keeps the core ahead of memory).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SingleToken(float* x, float* panel, int depth, float* y, bool accumulate)
    {
        Vector256<float> a0 = accumulate ? X86.Avx.LoadVector256(y) : default;
        Vector256<float> a1 = accumulate ? X86.Avx.LoadVector256(y + 8) : default;
        Vector256<float> b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
        int k = 0;
        for (; k + 4 <= depth; k += 4, panel += 64)
        {
            Vector256<float> s = X86.Avx.BroadcastScalarToVector256(x + k);
            a0 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel), a0);
            a1 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 8), a1);
            s = X86.Avx.BroadcastScalarToVector256(x + k + 1);
            b0 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 16), b0);
            b1 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 24), b1);
            s = X86.Avx.BroadcastScalarToVector256(x + k + 2);
            c0 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 32), c0);
            c1 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 40), c1);
            s = X86.Avx.BroadcastScalarToVector256(x + k + 3);
            d0 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 48), d0);
            d1 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 56), d1);
        }
        for (; k < depth; k++, panel += 16)
        {
            Vector256<float> s = X86.Avx.BroadcastScalarToVector256(x + k);
            a0 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel), a0);
            a1 = X86.Fma.MultiplyAdd(s, X86.Avx.LoadVector256(panel + 8), a1);
        }
        X86.Avx.Store(y, (a0 + b0) + (c0 + d0));
        X86.Avx.Store(y + 8, (a1 + b1) + (c1 + d1));
    }
}
