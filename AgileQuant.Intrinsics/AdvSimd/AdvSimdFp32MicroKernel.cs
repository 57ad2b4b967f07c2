using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// AdvSimd FP32 micro-kernel: a (≤4 tokens) × 16 rows tile in up to 16 q-register accumulators; per
/// column k it loads 16 panel floats (4 q), replicates x[k, t] (ld1r) and issues 4 FMLAs per token.
/// </summary>
internal readonly unsafe struct AdvSimdFp32MicroKernel : IFp32MicroKernel
{
    public static int MaxTokens => 4;

    public static void Tile(float* x, float* panel, int depth, float* y, nint yStride, int tokens, bool accumulate)
    {
        switch (tokens)
        {
            case 4: Tile<FourTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 3: Tile<ThreeTokens>(x, panel, depth, y, yStride, accumulate); break;
            case 2: Tile<TwoTokens>(x, panel, depth, y, yStride, accumulate); break;
            default: Tile<OneToken>(x, panel, depth, y, yStride, accumulate); break;
        }
    }

    // y[t, 0..16) (+)= Σ_k x[k, t] · panel[k, 0..16), t < N
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<N>(float* x, float* panel, int depth, float* y, nint yStride, bool accumulate)
        where N : struct, ITokenCount
    {
        Vector128<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector128<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector128<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector128<float> c30 = default, c31 = default, c32 = default, c33 = default;
        if (accumulate)
        {
            LoadRow(y, out c00, out c01, out c02, out c03);
            if (N.Value > 1) LoadRow(y + yStride, out c10, out c11, out c12, out c13);
            if (N.Value > 2) LoadRow(y + 2 * yStride, out c20, out c21, out c22, out c23);
            if (N.Value > 3) LoadRow(y + 3 * yStride, out c30, out c31, out c32, out c33);
        }
        for (int k = 0; k < depth; k++, x += N.Value)
        {
            Vector128<float> w0 = Arm.AdvSimd.LoadVector128(panel);
            Vector128<float> w1 = Arm.AdvSimd.LoadVector128(panel + 4);
            Vector128<float> w2 = Arm.AdvSimd.LoadVector128(panel + 8);
            Vector128<float> w3 = Arm.AdvSimd.LoadVector128(panel + 12);
            panel += 16;
            Vector128<float> b = Arm.AdvSimd.LoadAndReplicateToVector128(x);
            c00 = Arm.AdvSimd.FusedMultiplyAdd(c00, b, w0); c01 = Arm.AdvSimd.FusedMultiplyAdd(c01, b, w1);
            c02 = Arm.AdvSimd.FusedMultiplyAdd(c02, b, w2); c03 = Arm.AdvSimd.FusedMultiplyAdd(c03, b, w3);
            if (N.Value > 1)
            {
                b = Arm.AdvSimd.LoadAndReplicateToVector128(x + 1);
                c10 = Arm.AdvSimd.FusedMultiplyAdd(c10, b, w0); c11 = Arm.AdvSimd.FusedMultiplyAdd(c11, b, w1);
                c12 = Arm.AdvSimd.FusedMultiplyAdd(c12, b, w2); c13 = Arm.AdvSimd.FusedMultiplyAdd(c13, b, w3);
            }
            if (N.Value > 2)
            {
                b = Arm.AdvSimd.LoadAndReplicateToVector128(x + 2);
                c20 = Arm.AdvSimd.FusedMultiplyAdd(c20, b, w0); c21 = Arm.AdvSimd.FusedMultiplyAdd(c21, b, w1);
                c22 = Arm.AdvSimd.FusedMultiplyAdd(c22, b, w2); c23 = Arm.AdvSimd.FusedMultiplyAdd(c23, b, w3);
            }
            if (N.Value > 3)
            {
                b = Arm.AdvSimd.LoadAndReplicateToVector128(x + 3);
                c30 = Arm.AdvSimd.FusedMultiplyAdd(c30, b, w0); c31 = Arm.AdvSimd.FusedMultiplyAdd(c31, b, w1);
                c32 = Arm.AdvSimd.FusedMultiplyAdd(c32, b, w2); c33 = Arm.AdvSimd.FusedMultiplyAdd(c33, b, w3);
            }
        }
        StoreRow(y, c00, c01, c02, c03);
        if (N.Value > 1) StoreRow(y + yStride, c10, c11, c12, c13);
        if (N.Value > 2) StoreRow(y + 2 * yStride, c20, c21, c22, c23);
        if (N.Value > 3) StoreRow(y + 3 * yStride, c30, c31, c32, c33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadRow(float* y, out Vector128<float> a, out Vector128<float> b, out Vector128<float> c, out Vector128<float> d)
    {
        a = Arm.AdvSimd.LoadVector128(y);
        b = Arm.AdvSimd.LoadVector128(y + 4);
        c = Arm.AdvSimd.LoadVector128(y + 8);
        d = Arm.AdvSimd.LoadVector128(y + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* y, Vector128<float> a, Vector128<float> b, Vector128<float> c, Vector128<float> d)
    {
        Arm.AdvSimd.Store(y, a);
        Arm.AdvSimd.Store(y + 4, b);
        Arm.AdvSimd.Store(y + 8, c);
        Arm.AdvSimd.Store(y + 12, d);
    }
}
