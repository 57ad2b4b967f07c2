using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Register-blocked attention products over the transposed KV cache (head-major, one row of slots per head
/// dimension): scores for a tile of query rows at once (each key vector loaded once per tile, not once per
/// query) and probability-weighted value sums.
/// </summary>
/// <remarks>
/// Every (row, slot) score and every (row, dimension) output is computed by the same per-lane operation chain
/// whichever entry point or tile size produces it (fused multiply-adds in order of d, resp. of slot blocks, then
/// one horizontal sum), so a row's result never depends on which other rows share its tile: a chunked prefill,
/// a whole prefill and decode agree bit for bit. Widths are whole vectors; callers pad probabilities with zeros
/// and keep the cache slots past the last token finite (zero).
/// </remarks>
internal static unsafe class AttentionTiles
{
    /// <summary>Query rows per tile.</summary>
    public const int TileRows = 4;

    /// <summary>Largest vector width (floats) a slot row must be padded to: cache strides are multiples of it.</summary>
    public const int SlotAlignment = 16;

    /// <summary>Floats per vector: slot widths passed to this class are multiples of it.</summary>
    public static int VectorWidth => Vector<float>.Count;

    /// <summary>Rounds <paramref name="slots"/> up to a whole number of vectors.</summary>
    public static int PaddedWidth(int slots) => (slots + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;

    // s[t, j] = scale · Σ_d q[t, d] · K[d, j]   for t < rows (1..4), j < width; q rows at qStride, K rows at kStride
    public static void Scores(float* q, int qStride, int rows, float* k, int kStride, int headDim, float scale, float* s, int sStride, int width) =>
        Scores<F32Slots>(q, qStride, rows, (byte*)k, kStride * sizeof(float), null, headDim, scale, s, sStride, width);

    // o[t, d] = Σ_j p[t, j] · V[d, j]   for t < rows (1..4), d < headDim, j < width; p zero past each row's visible slots
    public static void WeightedValues(float* p, int pStride, int rows, float* v, int vStride, int headDim, float* o, int oStride, int width) =>
        WeightedValues<F32Slots>(p, pStride, rows, (byte*)v, vStride * sizeof(float), null, headDim, o, oStride, width);

    /// <summary>
    /// <see cref="Scores(float*, int, int, float*, int, int, float, float*, int, int)"/> over slot rows of
    /// <typeparamref name="TSlots"/>: K[d, j] is read at <paramref name="k"/> + d·<paramref name="kStrideBytes"/> + j·element
    /// size, times the slot's scale at <paramref name="kScales"/>[j] where the rows hold codes.
    /// </summary>
    public static void Scores<TSlots>(float* q, int qStride, int rows, byte* k, nint kStrideBytes, float* kScales, int headDim, float scale, float* s, int sStride, int width)
        where TSlots : ISlotVectors
    {
        if (rows == TileRows) ScoresFour<TSlots>(q, qStride, k, kStrideBytes, kScales, headDim, scale, s, sStride, width);
        else
            for (int t = 0; t < rows; t++) ScoresOne<TSlots>(q + t * qStride, k, kStrideBytes, kScales, headDim, scale, s + t * sStride, width);
    }

    /// <summary>
    /// <see cref="WeightedValues(float*, int, int, float*, int, int, float*, int, int)"/> over slot rows of
    /// <typeparamref name="TSlots"/> (V[d, j] at <paramref name="v"/> + d·<paramref name="vStrideBytes"/>, scales as in <see cref="Scores{TSlots}"/>).
    /// </summary>
    public static void WeightedValues<TSlots>(float* p, int pStride, int rows, byte* v, nint vStrideBytes, float* vScales, int headDim, float* o, int oStride, int width)
        where TSlots : ISlotVectors
    {
        if (rows == TileRows) WeightedValuesFour<TSlots>(p, pStride, v, vStrideBytes, vScales, headDim, o, oStride, width);
        else
            for (int t = 0; t < rows; t++) WeightedValuesOne<TSlots>(p + t * pStride, v, vStrideBytes, vScales, headDim, o + t * oStride, width);
    }

    private static void ScoresFour<TSlots>(float* q, int qStride, byte* k, nint kStride, float* kScales, int headDim, float scale, float* s, int sStride, int width)
        where TSlots : ISlotVectors
    {
        int w = Vector<float>.Count, e = TSlots.ElementSize;
        float* q1 = q + qStride, q2 = q1 + qStride, q3 = q2 + qStride;
        var scaleV = new Vector<float>(scale);
        int j = 0;
        for (; j + 2 * w <= width; j += 2 * w)
        {
            Vector<float> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector<float> a20 = default, a21 = default, a30 = default, a31 = default;
            Vector<float> c0 = TSlots.Scales(kScales + j), c1 = TSlots.Scales(kScales + j + w);
            byte* kj = k + j * e;
            for (int d = 0; d < headDim; d++, kj += kStride)
            {
                Vector<float> k0 = TSlots.Load(kj, c0), k1 = TSlots.Load(kj + w * e, c1);
                var b = new Vector<float>(q[d]);
                a00 = Vector.FusedMultiplyAdd(k0, b, a00);
                a01 = Vector.FusedMultiplyAdd(k1, b, a01);
                b = new Vector<float>(q1[d]);
                a10 = Vector.FusedMultiplyAdd(k0, b, a10);
                a11 = Vector.FusedMultiplyAdd(k1, b, a11);
                b = new Vector<float>(q2[d]);
                a20 = Vector.FusedMultiplyAdd(k0, b, a20);
                a21 = Vector.FusedMultiplyAdd(k1, b, a21);
                b = new Vector<float>(q3[d]);
                a30 = Vector.FusedMultiplyAdd(k0, b, a30);
                a31 = Vector.FusedMultiplyAdd(k1, b, a31);
            }
            float* sj = s + j;
            Vector.Store(a00 * scaleV, sj);
            Vector.Store(a01 * scaleV, sj + w);
            Vector.Store(a10 * scaleV, sj + sStride);
            Vector.Store(a11 * scaleV, sj + sStride + w);
            Vector.Store(a20 * scaleV, sj + 2 * sStride);
            Vector.Store(a21 * scaleV, sj + 2 * sStride + w);
            Vector.Store(a30 * scaleV, sj + 3 * sStride);
            Vector.Store(a31 * scaleV, sj + 3 * sStride + w);
        }
        for (; j < width; j += w)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector<float> c0 = TSlots.Scales(kScales + j);
            byte* kj = k + j * e;
            for (int d = 0; d < headDim; d++, kj += kStride)
            {
                Vector<float> k0 = TSlots.Load(kj, c0);
                a0 = Vector.FusedMultiplyAdd(k0, new Vector<float>(q[d]), a0);
                a1 = Vector.FusedMultiplyAdd(k0, new Vector<float>(q1[d]), a1);
                a2 = Vector.FusedMultiplyAdd(k0, new Vector<float>(q2[d]), a2);
                a3 = Vector.FusedMultiplyAdd(k0, new Vector<float>(q3[d]), a3);
            }
            Vector.Store(a0 * scaleV, s + j);
            Vector.Store(a1 * scaleV, s + sStride + j);
            Vector.Store(a2 * scaleV, s + 2 * sStride + j);
            Vector.Store(a3 * scaleV, s + 3 * sStride + j);
        }
    }

    private static void ScoresOne<TSlots>(float* q, byte* k, nint kStride, float* kScales, int headDim, float scale, float* s, int width)
        where TSlots : ISlotVectors
    {
        int w = Vector<float>.Count, e = TSlots.ElementSize;
        var scaleV = new Vector<float>(scale);
        int j = 0;
        for (; j + 4 * w <= width; j += 4 * w)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector<float> c0 = TSlots.Scales(kScales + j), c1 = TSlots.Scales(kScales + j + w), c2 = TSlots.Scales(kScales + j + 2 * w), c3 = TSlots.Scales(kScales + j + 3 * w);
            byte* kj = k + j * e;
            for (int d = 0; d < headDim; d++, kj += kStride)
            {
                var b = new Vector<float>(q[d]);
                a0 = Vector.FusedMultiplyAdd(TSlots.Load(kj, c0), b, a0);
                a1 = Vector.FusedMultiplyAdd(TSlots.Load(kj + w * e, c1), b, a1);
                a2 = Vector.FusedMultiplyAdd(TSlots.Load(kj + 2 * w * e, c2), b, a2);
                a3 = Vector.FusedMultiplyAdd(TSlots.Load(kj + 3 * w * e, c3), b, a3);
            }
            Vector.Store(a0 * scaleV, s + j);
            Vector.Store(a1 * scaleV, s + j + w);
            Vector.Store(a2 * scaleV, s + j + 2 * w);
            Vector.Store(a3 * scaleV, s + j + 3 * w);
        }
        for (; j < width; j += w)
        {
            Vector<float> a = default, c0 = TSlots.Scales(kScales + j);
            byte* kj = k + j * e;
            for (int d = 0; d < headDim; d++, kj += kStride)
                a = Vector.FusedMultiplyAdd(TSlots.Load(kj, c0), new Vector<float>(q[d]), a);
            Vector.Store(a * scaleV, s + j);
        }
    }

    /// <summary>
    /// 32 vector registers (AVX-512, also for 256-bit vectors): <see cref="WeightedValuesFour"/> can hold 4 rows × 4 dimensions
    /// of accumulators (16) plus 4 value vectors and a probability vector; with 16 registers that would spill, so it keeps 4 × 2.
    /// </summary>
    private static bool WideRegisterFile => Avx512F.VL.IsSupported;

    private static void WeightedValuesFour<TSlots>(float* p, int pStride, byte* v, nint vStride, float* vScales, int headDim, float* o, int oStride, int width)
        where TSlots : ISlotVectors
    {
        int w = Vector<float>.Count, e = TSlots.ElementSize;
        float* p1 = p + pStride, p2 = p1 + pStride, p3 = p2 + pStride;
        int d = WideRegisterFile ? WeightedValuesFourByFour<TSlots>(p, pStride, v, vStride, vScales, headDim, o, oStride, width) : 0;
        for (; d + 2 <= headDim; d += 2)
        {
            byte* v0 = v + d * vStride, v1 = v0 + vStride;
            Vector<float> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector<float> a20 = default, a21 = default, a30 = default, a31 = default;
            for (int j = 0; j < width; j += w)
            {
                Vector<float> c = TSlots.Scales(vScales + j);
                Vector<float> x0 = TSlots.Load(v0 + j * e, c), x1 = TSlots.Load(v1 + j * e, c);
                Vector<float> b = Vector.Load(p + j);
                a00 = Vector.FusedMultiplyAdd(b, x0, a00);
                a01 = Vector.FusedMultiplyAdd(b, x1, a01);
                b = Vector.Load(p1 + j);
                a10 = Vector.FusedMultiplyAdd(b, x0, a10);
                a11 = Vector.FusedMultiplyAdd(b, x1, a11);
                b = Vector.Load(p2 + j);
                a20 = Vector.FusedMultiplyAdd(b, x0, a20);
                a21 = Vector.FusedMultiplyAdd(b, x1, a21);
                b = Vector.Load(p3 + j);
                a30 = Vector.FusedMultiplyAdd(b, x0, a30);
                a31 = Vector.FusedMultiplyAdd(b, x1, a31);
            }
            o[d] = Vector.Sum(a00);
            o[d + 1] = Vector.Sum(a01);
            o[oStride + d] = Vector.Sum(a10);
            o[oStride + d + 1] = Vector.Sum(a11);
            o[2 * oStride + d] = Vector.Sum(a20);
            o[2 * oStride + d + 1] = Vector.Sum(a21);
            o[3 * oStride + d] = Vector.Sum(a30);
            o[3 * oStride + d + 1] = Vector.Sum(a31);
        }
        for (; d < headDim; d++)
            for (int t = 0; t < TileRows; t++) o[t * oStride + d] = Dot<TSlots>(p + t * pStride, v + d * vStride, vScales, width);
    }

    // o[t, d] = Σ_j p[t, j] · V[d, j] for the 4 rows and the dimensions in whole groups of 4; returns the first dimension left.
    // Each value vector load feeds 4 rows and each probability load 4 dimensions (8 loads per 16 FMAs instead of 6 per 8);
    // every (t, d) is the same FMA chain over j, then one horizontal sum, as in the 4 × 2 and single-row kernels.
    private static int WeightedValuesFourByFour<TSlots>(float* p, int pStride, byte* v, nint vStride, float* vScales, int headDim, float* o, int oStride, int width)
        where TSlots : ISlotVectors
    {
        int w = Vector<float>.Count, e = TSlots.ElementSize;
        float* p1 = p + pStride, p2 = p1 + pStride, p3 = p2 + pStride;
        float* o1 = o + oStride, o2 = o1 + oStride, o3 = o2 + oStride;
        int d = 0;
        for (; d + 4 <= headDim; d += 4)
        {
            byte* v0 = v + d * vStride, v1 = v0 + vStride, v2 = v1 + vStride, v3 = v2 + vStride;
            FourSums r0 = default, r1 = default, r2 = default, r3 = default;
            for (int j = 0; j < width; j += w)
            {
                Vector<float> c = TSlots.Scales(vScales + j);
                Vector<float> x0 = TSlots.Load(v0 + j * e, c), x1 = TSlots.Load(v1 + j * e, c), x2 = TSlots.Load(v2 + j * e, c), x3 = TSlots.Load(v3 + j * e, c);
                r0 = r0.Add(Vector.Load(p + j), x0, x1, x2, x3);
                r1 = r1.Add(Vector.Load(p1 + j), x0, x1, x2, x3);
                r2 = r2.Add(Vector.Load(p2 + j), x0, x1, x2, x3);
                r3 = r3.Add(Vector.Load(p3 + j), x0, x1, x2, x3);
            }
            r0.Store(o + d);
            r1.Store(o1 + d);
            r2.Store(o2 + d);
            r3.Store(o3 + d);
        }
        return d;
    }

    /// <summary>One probability row's accumulators for four head dimensions.</summary>
    private readonly struct FourSums(Vector<float> a0, Vector<float> a1, Vector<float> a2, Vector<float> a3)
    {
        private readonly Vector<float> _a0 = a0, _a1 = a1, _a2 = a2, _a3 = a3;

        // a_k + b · x_k, k < 4
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public FourSums Add(Vector<float> b, Vector<float> x0, Vector<float> x1, Vector<float> x2, Vector<float> x3) =>
            new(Vector.FusedMultiplyAdd(b, x0, _a0), Vector.FusedMultiplyAdd(b, x1, _a1), Vector.FusedMultiplyAdd(b, x2, _a2), Vector.FusedMultiplyAdd(b, x3, _a3));

        // o[k] = horizontal sum of a_k, k < 4
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(float* o)
        {
            o[0] = Vector.Sum(_a0);
            o[1] = Vector.Sum(_a1);
            o[2] = Vector.Sum(_a2);
            o[3] = Vector.Sum(_a3);
        }
    }

    private static void WeightedValuesOne<TSlots>(float* p, byte* v, nint vStride, float* vScales, int headDim, float* o, int width)
        where TSlots : ISlotVectors
    {
        int w = Vector<float>.Count, e = TSlots.ElementSize;
        int d = 0;
        for (; d + 4 <= headDim; d += 4)
        {
            byte* v0 = v + d * vStride, v1 = v0 + vStride, v2 = v1 + vStride, v3 = v2 + vStride;
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int j = 0; j < width; j += w)
            {
                Vector<float> b = Vector.Load(p + j), c = TSlots.Scales(vScales + j);
                a0 = Vector.FusedMultiplyAdd(b, TSlots.Load(v0 + j * e, c), a0);
                a1 = Vector.FusedMultiplyAdd(b, TSlots.Load(v1 + j * e, c), a1);
                a2 = Vector.FusedMultiplyAdd(b, TSlots.Load(v2 + j * e, c), a2);
                a3 = Vector.FusedMultiplyAdd(b, TSlots.Load(v3 + j * e, c), a3);
            }
            o[d] = Vector.Sum(a0);
            o[d + 1] = Vector.Sum(a1);
            o[d + 2] = Vector.Sum(a2);
            o[d + 3] = Vector.Sum(a3);
        }
        for (; d < headDim; d++) o[d] = Dot<TSlots>(p, v + d * vStride, vScales, width);
    }

    // Σ_j p[j] · v[j] with the lane structure of the blocked kernels
    private static float Dot<TSlots>(float* p, byte* v, float* vScales, int width) where TSlots : ISlotVectors
    {
        Vector<float> a = default;
        for (int j = 0; j < width; j += Vector<float>.Count)
            a = Vector.FusedMultiplyAdd(Vector.Load(p + j), TSlots.Load(v + j * TSlots.ElementSize, TSlots.Scales(vScales + j)), a);
        return Vector.Sum(a);
    }

    /// <summary>Channels and tokens per block of <see cref="Transpose"/>'s vector path.</summary>
    public const int TransposeBlock = 8;

    /// <summary>
    /// Writes channels [<paramref name="channelBegin"/>, <paramref name="channelEnd"/>) of the <paramref name="n"/> rows of
    /// <paramref name="x"/> as rows of <paramref name="t"/>: 8 tokens × 8 channels per AVX block (eight 32-byte stores
    /// into eight slot rows instead of 64 scattered 4-byte ones), the ragged edges one value at a time.
    /// </summary>
    // t[c, i] = x[i, c]   for i < n, channelBegin ≤ c < channelEnd; x rows at xStride, t rows at tStride
    public static void Transpose(float* x, int xStride, int n, int channelBegin, int channelEnd, float* t, int tStride)
    {
        int c0 = channelBegin, i0 = 0;
        if (Avx.IsSupported)
            for (; c0 + TransposeBlock <= channelEnd; c0 += TransposeBlock)
                for (i0 = 0; i0 + TransposeBlock <= n; i0 += TransposeBlock)
                    TransposeEight(x + (nint)i0 * xStride + c0, xStride, t + (nint)c0 * tStride + i0, tStride);
        // what the blocks left: tokens past the last whole block of the blocked channels, then every remaining channel
        int blockedEnd = c0, blockedTokens = c0 > channelBegin ? n / TransposeBlock * TransposeBlock : 0;
        for (int c = channelBegin; c < channelEnd; c++)
            for (int i = c < blockedEnd ? blockedTokens : 0; i < n; i++)
                t[(nint)c * tStride + i] = x[(nint)i * xStride + c];
    }

    // the 8 × 8 block: rows r_k = x[k, 0..7] → columns t[c, 0..7] (unpack pairs, shuffle quads, swap 128-bit halves)
    private static void TransposeEight(float* x, int xStride, float* t, int tStride)
    {
        Vector256<float> r0 = Avx.LoadVector256(x), r1 = Avx.LoadVector256(x + xStride);
        Vector256<float> r2 = Avx.LoadVector256(x + 2 * xStride), r3 = Avx.LoadVector256(x + 3 * xStride);
        Vector256<float> r4 = Avx.LoadVector256(x + 4 * xStride), r5 = Avx.LoadVector256(x + 5 * xStride);
        Vector256<float> r6 = Avx.LoadVector256(x + 6 * xStride), r7 = Avx.LoadVector256(x + 7 * xStride);
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(t, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(t + tStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(t + 2 * tStride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(t + 3 * tStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(t + 4 * tStride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(t + 5 * tStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(t + 6 * tStride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(t + 7 * tStride, Avx.Permute2x128(u3, u7, 0x31));
    }
}
