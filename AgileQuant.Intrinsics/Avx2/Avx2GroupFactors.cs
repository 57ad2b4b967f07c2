using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// The factors (scales or offsets) of one (row block, group) of <see cref="GroupedInt8RowBlocks"/> for its 8 rows, read
/// from one <see cref="GroupScaleEncoding"/>: every encoding gives exactly the float the matrix defines.
/// </summary>
internal unsafe interface IGroupFactors
{
    /// <summary>The 8 rows' factors of group <paramref name="g"/> in row block <paramref name="b"/>, from <paramref name="entries"/> (blocks, groups, 8) and, for super-blocks, <paramref name="supers"/> (blocks, super-blocks, 8).</summary>
    static abstract Vector256<float> Load(byte* entries, float* supers, in GroupedInt8KernelCall s, nint b, int g);
}

/// <summary><see cref="GroupScaleEncoding.Single"/>: the floats themselves.</summary>
internal readonly unsafe struct SingleGroupFactors : IGroupFactors
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(byte* entries, float* supers, in GroupedInt8KernelCall s, nint b, int g) =>
        X86.Avx.LoadVector256((float*)entries + ((b * s.Groups + g) << 3));
}

/// <summary><see cref="GroupScaleEncoding.Half"/>: IEEE halves widened exactly.</summary>
internal readonly unsafe struct HalfGroupFactors : IGroupFactors
{
    // float(h) = sign(h) | bits(h & 0x7FFF) << 13 · 2^112: exact for every finite half, subnormals included (the shifted
    // magnitude is the half's value · 2^−112 as a float, normal or subnormal)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(byte* entries, float* supers, in GroupedInt8KernelCall s, nint b, int g)
    {
        Vector256<int> bits = X86.Avx2.ConvertToVector256Int32((ushort*)entries + ((b * s.Groups + g) << 3));
        Vector256<float> magnitude = ((bits & Vector256.Create(0x7FFF)) << 13).AsSingle() * Vector256.Create(BitConverter.Int32BitsToSingle((127 + 112) << 23));
        return (magnitude.AsInt32() | (bits & Vector256.Create(0x8000)) << 16).AsSingle();
    }
}

/// <summary><see cref="GroupScaleEncoding.SuperBlock"/>: the super-block's float times the group's int8, rounded once.</summary>
internal readonly unsafe struct SuperBlockGroupFactors : IGroupFactors
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(byte* entries, float* supers, in GroupedInt8KernelCall s, nint b, int g) =>
        X86.Avx.LoadVector256(supers + ((b * s.SuperBlocks + (g >> s.SuperBlockShift)) << 3))
        * X86.Avx.ConvertToVector256Single(X86.Avx2.ConvertToVector256Int32((sbyte*)entries + ((b * s.Groups + g) << 3)));
}

/// <summary>Whether the groups have offsets, as a type argument (the JIT drops the offset term where there is none).</summary>
internal interface IGroupOffsets
{
    /// <summary>True: subtract <c>o · Σ_{c∈g} x_q</c> per group.</summary>
    static abstract bool Present { get; }
}

/// <summary>No offsets: <c>W = s · q</c>.</summary>
internal readonly struct WithoutGroupOffsets : IGroupOffsets
{
    public static bool Present => false;
}

/// <summary>Offsets: <c>W = s · q − o</c>.</summary>
internal readonly struct WithGroupOffsets : IGroupOffsets
{
    public static bool Present => true;
}

/// <summary>4-column chunks per group, as a type argument.</summary>
internal interface IGroupChunks
{
    /// <summary>4 (16 columns) or 8 (32 columns).</summary>
    static abstract int Value { get; }
}

/// <summary>Groups of 16 columns (Q6_K).</summary>
internal readonly struct SixteenColumnGroups : IGroupChunks
{
    public static int Value => 4;
}

/// <summary>Groups of 32 columns (Q8_0, Q5_x).</summary>
internal readonly struct ThirtyTwoColumnGroups : IGroupChunks
{
    public static int Value => 8;
}
