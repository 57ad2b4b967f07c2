using System.Runtime.Intrinsics;
using AgileQuant.Core.Runtime.KvStorage.Arm;
using AgileQuant.Core.Runtime.KvStorage.X86;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Integer dot products of one quantization block, the inner step of attention over quantized keys: int8 query codes
/// against the int8 or packed 4-bit codes of per-token key rows (<see cref="Q8Rows"/>, <see cref="Q4Rows{TRotation}"/>),
/// int16 query codes against per-channel key groups (<see cref="Q8ChannelKeys"/>, <see cref="Q4ChannelKeys"/>); exact in int32. Blocks of 32 take
/// the SIMD paths (<see cref="X86BlockDot"/>, <see cref="ArmBlockDot"/>, then portable 128-bit vectors); every other size,
/// and <c>simd: false</c>, the scalar twins, which are the specification (results are equal: the sums are exact).
/// </summary>
internal static unsafe class BlockDot
{
    /// <summary>Whether any SIMD path runs here (otherwise the scalar twins run whatever is asked).</summary>
    public static bool HasSimd => X86BlockDot.IsSupported || ArmBlockDot.IsSupported || Vector128.IsHardwareAccelerated;

    // Σ_{i<n} a[i]·b[i]   a, b int8 in [−127, 127]
    public static int Signed(sbyte* a, sbyte* b, int n, bool simd)
    {
        if (simd && n == 32)
        {
            if (X86BlockDot.IsSupported) return X86BlockDot.Signed32(a, b);
            if (ArmBlockDot.IsSupported) return ArmBlockDot.Signed32(a, b);
            if (Vector128.IsHardwareAccelerated) return Signed32Portable(a, b);
        }
        return SignedScalar(a, b, n);
    }

    // Σ_{i<n} q[i]·c[i]   q int8 in [−127, 127]; c 4-bit codes, byte j of the block = c[j] | c[j + n/2] << 4
    public static int Nibbles(sbyte* q, byte* packed, int n, bool simd)
    {
        if (simd && n == 32)
        {
            if (X86BlockDot.IsSupported) return X86BlockDot.Nibbles32(q, packed);
            if (ArmBlockDot.IsSupported) return ArmBlockDot.Nibbles32(q, packed);
            if (Vector128.IsHardwareAccelerated) return Nibbles32Portable(q, packed);
        }
        return NibblesScalar(q, packed, n);
    }

    // Σ_{i<n} q[i]·k[i]   q int16, k int8 codes
    public static int Int16Signed(short* q, sbyte* k, int n, bool simd)
    {
        if (simd && n == 32)
        {
            if (X86BlockDot.IsSupported) return X86BlockDot.Int16Signed32(q, k);
            if (ArmBlockDot.IsSupported) return ArmBlockDot.Int16Signed32(q, k);
        }
        return Int16SignedScalar(q, k, n);
    }

    // Σ_{i<n} q[i]·c[i]   q int16; c 4-bit codes, byte j of the block = c[j] | c[j + n/2] << 4
    public static int Int16Nibbles(short* q, byte* packed, int n, bool simd)
    {
        if (simd && n == 32)
        {
            if (X86BlockDot.IsSupported) return X86BlockDot.Int16Nibbles32(q, packed);
            if (ArmBlockDot.IsSupported) return ArmBlockDot.Int16Nibbles32(q, packed);
        }
        return Int16NibblesScalar(q, packed, n);
    }

    // sums[b] = Σ_{i<n} q[b·n + i]·c[b·n + i] for each block b < blocks of one packed row (n/2 bytes per block): Int16Nibbles per block
    public static void Int16NibblesRow(short* q, byte* packed, int n, int blocks, int* sums, bool simd)
    {
        if (simd && n == 32 && X86BlockDot.IsSupported)
        {
            X86BlockDot.Int16NibblesRow32(q, packed, blocks, sums);
            return;
        }
        for (int b = 0; b < blocks; b++) sums[b] = Int16Nibbles(q + b * n, packed + b * n / 2, n, simd);
    }

    /// <summary>Scalar twin of <see cref="Int16Signed"/>.</summary>
    public static int Int16SignedScalar(short* q, sbyte* k, int n)
    {
        int sum = 0;
        for (int i = 0; i < n; i++) sum += q[i] * k[i];
        return sum;
    }

    /// <summary>Scalar twin of <see cref="Int16Nibbles"/>.</summary>
    public static int Int16NibblesScalar(short* q, byte* packed, int n)
    {
        int half = n / 2, sum = 0;
        for (int j = 0; j < half; j++)
            sum += q[j] * (packed[j] & 0x0F) + q[j + half] * (packed[j] >> 4);
        return sum;
    }

    /// <summary>Scalar twin of <see cref="Signed"/>.</summary>
    public static int SignedScalar(sbyte* a, sbyte* b, int n)
    {
        int sum = 0;
        for (int i = 0; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>Scalar twin of <see cref="Nibbles"/>.</summary>
    public static int NibblesScalar(sbyte* q, byte* packed, int n)
    {
        int half = n / 2, sum = 0;
        for (int j = 0; j < half; j++)
            sum += q[j] * (packed[j] & 0x0F) + q[j + half] * (packed[j] >> 4);
        return sum;
    }

    private static int Signed32Portable(sbyte* a, sbyte* b) =>
        Vector128.Sum(Products(Vector128.Load(a), Vector128.Load(b)) + Products(Vector128.Load(a + 16), Vector128.Load(b + 16)));

    private static int Nibbles32Portable(sbyte* q, byte* packed)
    {
        Vector128<byte> bytes = Vector128.Load(packed);
        Vector128<sbyte> low = (bytes & Vector128.Create((byte)0x0F)).AsSByte(), high = Vector128.ShiftRightLogical(bytes, 4).AsSByte();
        return Vector128.Sum(Products(low, Vector128.Load(q)) + Products(high, Vector128.Load(q + 16)));
    }

    // 128-bit vectors of any ISA: lanes of Σ c·q over 16 int8 pairs, products widened to int16 (|c·q| ≤ 127² fits), then int32
    private static Vector128<int> Products(Vector128<sbyte> c, Vector128<sbyte> q)
    {
        (Vector128<short> cLow, Vector128<short> cHigh) = Vector128.Widen(c);
        (Vector128<short> qLow, Vector128<short> qHigh) = Vector128.Widen(q);
        return Widened(cLow * qLow) + Widened(cHigh * qHigh);
    }

    private static Vector128<int> Widened(Vector128<short> x)
    {
        (Vector128<int> low, Vector128<int> high) = Vector128.Widen(x);
        return low + high;
    }
}
