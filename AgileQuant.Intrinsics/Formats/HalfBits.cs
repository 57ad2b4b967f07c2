using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// IEEE half bits (zero-extended into int32 lanes) widened to float exactly, on any vector width:
/// <c>float(h) = sign(h) | bits(h &amp; 0x7FFF) &lt;&lt; 13 · 2^112</c>. Exact for every finite half, subnormals included
/// (the shifted magnitude is the half's value · 2^−112 as a float, normal or subnormal; the product is exact).
/// </summary>
internal static class HalfBits
{
    private static float TwoToThe112 => BitConverter.Int32BitsToSingle((127 + 112) << 23);

    /// <summary>The 16 halves in the low 16 bits of <paramref name="bits"/>' lanes, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector512<int> bits)
    {
        Vector512<float> magnitude = ((bits & Vector512.Create(0x7FFF)) << 13).AsSingle() * Vector512.Create(TwoToThe112);
        return (magnitude.AsInt32() | (bits & Vector512.Create(0x8000)) << 16).AsSingle();
    }

    /// <summary>The 8 halves in the low 16 bits of <paramref name="bits"/>' lanes, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<int> bits)
    {
        Vector256<float> magnitude = ((bits & Vector256.Create(0x7FFF)) << 13).AsSingle() * Vector256.Create(TwoToThe112);
        return (magnitude.AsInt32() | (bits & Vector256.Create(0x8000)) << 16).AsSingle();
    }

    /// <summary>The 4 halves in the low 16 bits of <paramref name="bits"/>' lanes, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen(Vector128<int> bits)
    {
        Vector128<float> magnitude = ((bits & Vector128.Create(0x7FFF)) << 13).AsSingle() * Vector128.Create(TwoToThe112);
        return (magnitude.AsInt32() | (bits & Vector128.Create(0x8000)) << 16).AsSingle();
    }
}
