using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Vector loops of the KV row formats, on <see cref="Vector{T}"/> (256-bit with AVX2 and AVX-512, 128-bit with AdvSimd)
/// and <see cref="Vector128"/>, each ending in a scalar remainder: widening stored codes to FP32 and the two attention
/// products. Element-wise results equal the scalar twins' bit for bit; <see cref="Dot"/> sums in vector lanes.
/// </summary>
internal static unsafe class KvVectors
{
    private static readonly float TwoToThe112 = float.ScaleB(1f, 112);

    // dst[i] = fp32(src[i])   fp16 → fp32, exact (subnormals, ±∞ and NaN included)
    public static void HalfToSingle(Half* src, float* dst, int n)
    {
        int i = 0, w = Vector<ushort>.Count;
        if (Vector.IsHardwareAccelerated)
            for (; i + w <= n; i += w)
            {
                Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(src + i), out Vector<uint> low, out Vector<uint> high);
                Unsafe.WriteUnaligned(dst + i, HalfBitsToSingle(low));
                Unsafe.WriteUnaligned(dst + i + w / 2, HalfBitsToSingle(high));
            }
        for (; i < n; i++) dst[i] = (float)src[i];
    }

    // fp16 bits (one per lane) → fp32: magnitude bits shifted into place and rescaled by 2^112 (normal and subnormal halves
    // alike), exponent 31 (∞, NaN) mapped to 255, then the sign
    private static Vector<float> HalfBitsToSingle(Vector<uint> h)
    {
        Vector<uint> bits = (h & new Vector<uint>(0x7FFF)) << 13, sign = (h & new Vector<uint>(0x8000)) << 16;
        Vector<uint> scaled = Vector.AsVectorUInt32(Vector.AsVectorSingle(bits) * new Vector<float>(TwoToThe112));
        Vector<uint> special = Vector.GreaterThanOrEqual(bits, new Vector<uint>(0x0F800000));
        return Vector.AsVectorSingle(Vector.ConditionalSelect(special, bits | new Vector<uint>(0x7F800000), scaled) | sign);
    }

    // fp16 bits of a finite value (exponent < 31, one per lane, zero-extended) → fp32, exact: sign and magnitude moved into
    // place by one arithmetic shift (h << 16 >> 3, the sign's copies in bits 28–30 cleared), rescaled by 2^112
    private static Vector<float> FiniteHalfBitsToSingle(Vector<uint> h) =>
        Vector.AsVectorSingle(Vector.AsVectorUInt32(Vector.ShiftRightArithmetic(Vector.AsVectorInt32(h << 16), 3)) & new Vector<uint>(0x8FFFFFFF))
        * new Vector<float>(TwoToThe112);

    /// <summary>Halves per step of the fused fp16 loops (<see cref="DotsFiniteHalves"/>, <see cref="AddScaledFiniteHalves"/>): n must be a multiple.</summary>
    public static int HalfStep => Vector.IsHardwareAccelerated ? Vector<ushort>.Count : 0;

    // whether every h[i] is finite (exponent < 31), i < n, n a multiple of HalfStep
    public static bool AllFiniteHalves(Half* h, int n)
    {
        Vector<ushort> max = Vector<ushort>.Zero;
        for (int i = 0; i < n; i += Vector<ushort>.Count) max = Vector.Max(max, Unsafe.ReadUnaligned<Vector<ushort>>(h + i) & new Vector<ushort>(0x7FFF));
        return Vector.LessThanAll(max, new Vector<ushort>(0x7C00));
    }

    /// <summary>Most queries one call of <see cref="DotsFiniteHalves"/> or <see cref="AddScaledFiniteHalves"/> takes (their accumulators stay in registers).</summary>
    public const int FusedQueries = 4;

    // s[c · sStride] = Σ_i q_c[i] · fp32(k[i]) for c < count ≤ FusedQueries (queries n apart), each in the lanes and order of
    // Dot (equal to Dot over the widened row, bit for bit), the row widened once for all; k finite, n a multiple of HalfStep
    public static void DotsFiniteHalves(float* q, int count, Half* k, int n, float* s, int sStride)
    {
        int w = Vector<float>.Count;
        Vector<float> l0 = default, l1 = default, l2 = default, l3 = default;
        for (int i = 0; i < n; i += 2 * w)
        {
            Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(k + i), out Vector<uint> low, out Vector<uint> high);
            Vector<float> x0 = FiniteHalfBitsToSingle(low), x1 = FiniteHalfBitsToSingle(high);
            l0 = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + i + w), x1, Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + i), x0, l0));
            if (count > 1) l1 = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + n + i + w), x1, Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + n + i), x0, l1));
            if (count > 2) l2 = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + 2 * n + i + w), x1, Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + 2 * n + i), x0, l2));
            if (count > 3) l3 = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + 3 * n + i + w), x1, Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(q + 3 * n + i), x0, l3));
        }
        s[0] = Vector.Sum(l0);
        if (count > 1) s[sStride] = Vector.Sum(l1);
        if (count > 2) s[2 * sStride] = Vector.Sum(l2);
        if (count > 3) s[3 * sStride] = Vector.Sum(l3);
    }

    // acc_c[i] = fma(p[c · pStride + t], fp32(rows[t · rowStride + i]), acc_c[i]) for t < rowCount in order, c < count ≤
    // FusedQueries (accumulators n apart), rows whose p is 0 skipped: AddScaled of each widened row, bit for bit; each chunk
    // of a row widened once for all queries; every row finite, n a multiple of HalfStep
    public static void AddScaledFiniteHalves(Half* rows, int rowStride, int rowCount, float* p, int pStride, int count, float* acc, int n)
    {
        int w = Vector<float>.Count;
        if (count == 1 && n % (4 * w) == 0)
        {
            AddScaledFiniteHalvesOneQuery(rows, rowStride, rowCount, p, acc, n);
            return;
        }
        for (int i = 0; i < n; i += 2 * w) // two vectors of each query's accumulators stay in registers over the rows
        {
            float* a = acc + i;
            Vector<float> a00 = Load(a, 0), a01 = Load(a, w), a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
            if (count > 1) (a10, a11) = (Load(a, n), Load(a, n + w));
            if (count > 2) (a20, a21) = (Load(a, 2 * n), Load(a, 2 * n + w));
            if (count > 3) (a30, a31) = (Load(a, 3 * n), Load(a, 3 * n + w));
            Half* row = rows + i;
            for (int t = 0; t < rowCount; t++, row += rowStride)
            {
                Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(row), out Vector<uint> low, out Vector<uint> high);
                Vector<float> x0 = FiniteHalfBitsToSingle(low), x1 = FiniteHalfBitsToSingle(high);
                if (p[t] is float p0 and not 0) (a00, a01) = (Vector.FusedMultiplyAdd(new Vector<float>(p0), x0, a00), Vector.FusedMultiplyAdd(new Vector<float>(p0), x1, a01));
                if (count > 1 && p[pStride + t] is float p1 and not 0) (a10, a11) = (Vector.FusedMultiplyAdd(new Vector<float>(p1), x0, a10), Vector.FusedMultiplyAdd(new Vector<float>(p1), x1, a11));
                if (count > 2 && p[2 * pStride + t] is float p2 and not 0) (a20, a21) = (Vector.FusedMultiplyAdd(new Vector<float>(p2), x0, a20), Vector.FusedMultiplyAdd(new Vector<float>(p2), x1, a21));
                if (count > 3 && p[3 * pStride + t] is float p3 and not 0) (a30, a31) = (Vector.FusedMultiplyAdd(new Vector<float>(p3), x0, a30), Vector.FusedMultiplyAdd(new Vector<float>(p3), x1, a31));
            }
            Store(a, 0, a00, w, a01);
            if (count > 1) Store(a, n, a10, n + w, a11);
            if (count > 2) Store(a, 2 * n, a20, 2 * n + w, a21);
            if (count > 3) Store(a, 3 * n, a30, 3 * n + w, a31);
        }
    }

    // one query: four vectors of accumulators in registers over the rows, the same products in the same order
    private static void AddScaledFiniteHalvesOneQuery(Half* rows, int rowStride, int rowCount, float* p, float* acc, int n)
    {
        int w = Vector<float>.Count;
        for (int i = 0; i < n; i += 4 * w)
        {
            float* a = acc + i;
            Vector<float> a0 = Load(a, 0), a1 = Load(a, w), a2 = Load(a, 2 * w), a3 = Load(a, 3 * w);
            Half* row = rows + i;
            for (int t = 0; t < rowCount; t++, row += rowStride)
            {
                if (p[t] == 0) continue;
                var weight = new Vector<float>(p[t]);
                Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(row), out Vector<uint> h0, out Vector<uint> h1);
                Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(row + 2 * w), out Vector<uint> h2, out Vector<uint> h3);
                a0 = Vector.FusedMultiplyAdd(weight, FiniteHalfBitsToSingle(h0), a0);
                a1 = Vector.FusedMultiplyAdd(weight, FiniteHalfBitsToSingle(h1), a1);
                a2 = Vector.FusedMultiplyAdd(weight, FiniteHalfBitsToSingle(h2), a2);
                a3 = Vector.FusedMultiplyAdd(weight, FiniteHalfBitsToSingle(h3), a3);
            }
            Store(a, 0, a0, w, a1);
            Store(a, 2 * w, a2, 3 * w, a3);
        }
    }

    private static Vector<float> Load(float* a, int at) => Unsafe.ReadUnaligned<Vector<float>>(a + at);

    private static void Store(float* a, int at0, Vector<float> x0, int at1, Vector<float> x1)
    {
        Unsafe.WriteUnaligned(a + at0, x0);
        Unsafe.WriteUnaligned(a + at1, x1);
    }

    // acc[i] = fma(w[t], c_t[i], acc[i]) for t < count in order (rows whose p[t · pStride] is 0 skipped) and i < 32: c_t the
    // 4-bit codes of one block at packed + t · rowBytes (byte j = c[j] | c[j + 16] << 4); AddScaled of each widened block, bit for bit
    public static void AddScaledNibbles32(byte* packed, int rowBytes, int count, float* p, int pStride, float* w, float* acc)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a0 = Vector256.Load(acc), a1 = Vector256.Load(acc + 8), a2 = Vector256.Load(acc + 16), a3 = Vector256.Load(acc + 24);
            for (int t = 0; t < count; t++, packed += rowBytes)
            {
                if (p[t * pStride] == 0) continue;
                Vector256<float> weight = Vector256.Create(w[t]);
                Vector128<byte> bytes = Vector128.Load(packed);
                Vector256<byte> codes = Vector256.Create(bytes & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(bytes, 4));
                (Vector256<ushort> low, Vector256<ushort> high) = Vector256.Widen(codes);
                (Vector256<uint> c0, Vector256<uint> c1) = Vector256.Widen(low);
                (Vector256<uint> c2, Vector256<uint> c3) = Vector256.Widen(high);
                a0 = Vector256.FusedMultiplyAdd(weight, Vector256.ConvertToSingle(c0.AsInt32()), a0);
                a1 = Vector256.FusedMultiplyAdd(weight, Vector256.ConvertToSingle(c1.AsInt32()), a1);
                a2 = Vector256.FusedMultiplyAdd(weight, Vector256.ConvertToSingle(c2.AsInt32()), a2);
                a3 = Vector256.FusedMultiplyAdd(weight, Vector256.ConvertToSingle(c3.AsInt32()), a3);
            }
            a0.Store(acc);
            a1.Store(acc + 8);
            a2.Store(acc + 16);
            a3.Store(acc + 24);
            return;
        }
        for (int half = 0; half < 2; half++) // 128-bit vectors: the low nibbles (codes 0–15), then the high ones (16–31)
        {
            float* a = acc + 16 * half;
            Vector128<float> a0 = Vector128.Load(a), a1 = Vector128.Load(a + 4), a2 = Vector128.Load(a + 8), a3 = Vector128.Load(a + 12);
            byte* block = packed;
            for (int t = 0; t < count; t++, block += rowBytes)
            {
                if (p[t * pStride] == 0) continue;
                Vector128<float> weight = Vector128.Create(w[t]);
                Vector128<byte> bytes = Vector128.Load(block);
                Vector128<byte> codes = half == 0 ? bytes & Vector128.Create((byte)0x0F) : Vector128.ShiftRightLogical(bytes, 4);
                (Vector128<ushort> low, Vector128<ushort> high) = Vector128.Widen(codes);
                (Vector128<uint> c0, Vector128<uint> c1) = Vector128.Widen(low);
                (Vector128<uint> c2, Vector128<uint> c3) = Vector128.Widen(high);
                a0 = Vector128.FusedMultiplyAdd(weight, Vector128.ConvertToSingle(c0.AsInt32()), a0);
                a1 = Vector128.FusedMultiplyAdd(weight, Vector128.ConvertToSingle(c1.AsInt32()), a1);
                a2 = Vector128.FusedMultiplyAdd(weight, Vector128.ConvertToSingle(c2.AsInt32()), a2);
                a3 = Vector128.FusedMultiplyAdd(weight, Vector128.ConvertToSingle(c3.AsInt32()), a3);
            }
            a0.Store(a);
            a1.Store(a + 4);
            a2.Store(a + 8);
            a3.Store(a + 12);
        }
    }

    // codes[i] = (short)clamp(round(x[i] · inverse), −32767, 32767), rounded half to even as MathF.Round; every x[i] · inverse finite
    public static void RoundToInt16(float* x, float inverse, short* codes, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
                Vector256.Narrow(RoundedInt32(Vector256.Load(x + i) * inverse), RoundedInt32(Vector256.Load(x + i + 8) * inverse)).Store(codes + i);
        if (Vector128.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                Vector128.Narrow(RoundedInt32(Vector128.Load(x + i) * inverse), RoundedInt32(Vector128.Load(x + i + 4) * inverse)).Store(codes + i);
        for (; i < n; i++) codes[i] = (short)Math.Clamp(MathF.Round(x[i] * inverse), -32767f, 32767f);
    }

    private static Vector256<int> RoundedInt32(Vector256<float> x) =>
        Vector256.ConvertToInt32(Vector256.Clamp(Vector256.Round(x), Vector256.Create(-32767f), Vector256.Create(32767f)));

    private static Vector128<int> RoundedInt32(Vector128<float> x) =>
        Vector128.ConvertToInt32(Vector128.Clamp(Vector128.Round(x), Vector128.Create(-32767f), Vector128.Create(32767f)));

    // dst[i] = src[i]   int8 → fp32
    public static void Int8ToSingle(sbyte* src, float* dst, int n)
    {
        int i = 0, w = Vector<sbyte>.Count, quarter = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated)
            for (; i + w <= n; i += w)
            {
                Vector.Widen(Unsafe.ReadUnaligned<Vector<sbyte>>(src + i), out Vector<short> low, out Vector<short> high);
                Vector.Widen(low, out Vector<int> a0, out Vector<int> a1);
                Vector.Widen(high, out Vector<int> a2, out Vector<int> a3);
                Unsafe.WriteUnaligned(dst + i, Vector.ConvertToSingle(a0));
                Unsafe.WriteUnaligned(dst + i + quarter, Vector.ConvertToSingle(a1));
                Unsafe.WriteUnaligned(dst + i + 2 * quarter, Vector.ConvertToSingle(a2));
                Unsafe.WriteUnaligned(dst + i + 3 * quarter, Vector.ConvertToSingle(a3));
            }
        for (; i < n; i++) dst[i] = src[i];
    }

    // codes[j] = low nibble of packed[j], codes[j + n/2] = its high nibble, j < n/2   (one block of n 4-bit codes)
    public static void UnpackNibbles(byte* packed, sbyte* codes, int n)
    {
        int half = n / 2;
        if (half == 16 && Vector128.IsHardwareAccelerated)
        {
            Vector128<byte> bytes = Vector128.Load(packed);
            (bytes & Vector128.Create((byte)0x0F)).Store((byte*)codes);
            Vector128.ShiftRightLogical(bytes, 4).Store((byte*)codes + 16);
            return;
        }
        for (int j = 0; j < half; j++)
        {
            codes[j] = (sbyte)(packed[j] & 0x0F);
            codes[j + half] = (sbyte)(packed[j] >> 4);
        }
    }

    // acc[i] = fma(w, x[i], acc[i])
    public static void AddScaled(float* x, float w, float* acc, int n)
    {
        int i = 0, width = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated)
        {
            var wv = new Vector<float>(w);
            for (; i + width <= n; i += width)
                Unsafe.WriteUnaligned(acc + i, Vector.FusedMultiplyAdd(wv, Unsafe.ReadUnaligned<Vector<float>>(x + i), Unsafe.ReadUnaligned<Vector<float>>(acc + i)));
        }
        for (; i < n; i++) acc[i] = MathF.FusedMultiplyAdd(w, x[i], acc[i]);
    }

    // Σ_i a[i] · b[i], in vector lanes, then their sum, then the remainder
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0, width = Vector<float>.Count;
        float sum = 0;
        if (Vector.IsHardwareAccelerated && n >= width)
        {
            Vector<float> lanes = default;
            for (; i + width <= n; i += width)
                lanes = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(a + i), Unsafe.ReadUnaligned<Vector<float>>(b + i), lanes);
            sum = Vector.Sum(lanes);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        return sum;
    }
}
