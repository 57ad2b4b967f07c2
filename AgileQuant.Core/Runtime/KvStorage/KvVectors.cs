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
