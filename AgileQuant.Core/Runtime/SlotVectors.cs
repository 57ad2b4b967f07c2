using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// How <see cref="AttentionTiles"/> reads a vector of consecutive slots from one row of a transposed KV cache: FP32
/// values (<see cref="F32Slots"/>), or int8 codes times each slot's scale (<see cref="Int8Slots"/>, the paper's KV codes).
/// Either way a lane holds the same FP32 value the rounding produced, so both give the same results bit for bit.
/// </summary>
internal unsafe interface ISlotVectors
{
    /// <summary>Bytes of one cached value.</summary>
    static abstract int ElementSize { get; }

    /// <summary>The scales of the slots starting at <paramref name="scales"/> (FP32 rows: none, unused).</summary>
    static abstract Vector<float> Scales(float* scales);

    /// <summary>The values of the <see cref="Vector{T}.Count"/> slots at <paramref name="p"/>, with the slots' <paramref name="scales"/>.</summary>
    static abstract Vector<float> Load(byte* p, Vector<float> scales);
}

/// <summary>Slot rows of FP32 values.</summary>
internal readonly unsafe struct F32Slots : ISlotVectors
{
    public static int ElementSize => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Scales(float* scales) => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Load(byte* p, Vector<float> scales) => Vector.Load((float*)p);
}

/// <summary>Slot rows of int8 codes, one FP32 scale per slot (per token and key/value head): value = fp32(code) · scale.</summary>
internal readonly unsafe struct Int8Slots : ISlotVectors
{
    public static int ElementSize => sizeof(sbyte);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Scales(float* scales) => Vector.Load(scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Load(byte* p, Vector<float> scales) => Codes((sbyte*)p) * scales;

    // fp32 of Vector<float>.Count int8 codes at p
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Codes(sbyte* p)
    {
        if (Vector<float>.Count == 8 && Avx2.IsSupported) return Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p)).AsVector();
        if (Vector<float>.Count == 16 && Avx512F.IsSupported) return Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(p))).AsVector();
        if (Vector<float>.Count == 4)
            return Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<int>(p)).AsSByte()))).AsVector();
        Span<float> values = stackalloc float[Vector<float>.Count];
        for (int i = 0; i < values.Length; i++) values[i] = p[i];
        return new Vector<float>(values);
    }
}
