using System.Numerics;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>Block geometry and fp16 scale rounding shared by the quantized KV row formats (<see cref="Q8Rows"/>, <see cref="Q4Rows{TRotation}"/>).</summary>
internal static class KvBlocks
{
    /// <summary>Values per block along the head dimension: 32, as llama.cpp's q8_0/q4_0, or gcd(head size, 32) for heads that 32 does not divide.</summary>
    public static int Size(int headDim) => (int)BigInteger.GreatestCommonDivisor(headDim, 32);

    /// <summary>The smallest fp16 value ≥ <paramref name="x"/> (x ≥ 0): a scale rounded this way never makes a code clip.</summary>
    public static Half RoundUpToHalf(float x)
    {
        var h = (Half)x;
        return (float)h < x ? Half.BitIncrement(h) : h;
    }

    /// <summary>The largest fp16 value ≤ <paramref name="x"/>: a minimum rounded this way keeps every value of its block at or above it.</summary>
    public static Half RoundDownToHalf(float x)
    {
        var h = (Half)x;
        return (float)h > x ? Half.BitDecrement(h) : h;
    }

    /// <summary>Bytes from the start of a prepared int8 query to its per-block scales: the codes, padded to whole floats.</summary>
    public static int QueryScalesOffset(int headDim) => (headDim + 3) & ~3;
}

/// <summary>
/// The normalized Walsh–Hadamard transform of each block: an orthonormal, symmetric rotation (its own inverse), so
/// q·k = (Hq)·(Hk) and H(Σ p·Hv) = Σ p·v. It spreads an outlier channel over its block before 4-bit rounding (QuaRot,
/// arXiv 2404.00456).
/// </summary>
internal static class BlockHadamard
{
    // x[b·B .. b·B+B) ← H_B x[b·B .. b·B+B) / √B for every block b; B a power of two (the same additions and scaling, bit
    // for bit, as the scalar butterflies this used to run: HadamardTransform's vector path equals its scalar twin exactly)
    public static void Rotate(Span<float> x, int block) => AgileQuant.Intrinsics.Rotation.HadamardTransform.TransformRows(x, block);
}

/// <summary>The rotation <see cref="Q4Rows{TRotation}"/> applies to each block before rounding (and to queries and outputs).</summary>
internal interface IBlockRotation
{
    /// <summary>Rotates each block of <paramref name="block"/> values of <paramref name="x"/> in place; the rotation is its own inverse.</summary>
    static abstract void Apply(Span<float> x, int block);
}

/// <summary>The normalized Walsh–Hadamard transform of each block (<see cref="BlockHadamard"/>): what <see cref="KvCacheType.Q4"/> uses.</summary>
internal readonly struct HadamardRotation : IBlockRotation
{
    public static void Apply(Span<float> x, int block) => BlockHadamard.Rotate(x, block);
}

/// <summary>No rotation: plain per-token 4-bit blocks, kept to measure what the rotation buys (docs/accuracy.md).</summary>
internal readonly struct NoRotation : IBlockRotation
{
    public static void Apply(Span<float> x, int block) { }
}
