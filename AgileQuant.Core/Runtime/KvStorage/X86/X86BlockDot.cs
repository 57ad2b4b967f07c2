using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AgileQuant.Core.Runtime.KvStorage.X86;

/// <summary>
/// x86 block dot products of 32 query codes (<see cref="BlockDot"/>): int8 queries by AVX2 <c>vpmaddubsw</c> +
/// <c>vpmaddwd</c>, or AVX-VNNI <c>vpdpbusd</c>, on unsigned × signed bytes (signed keys go through the sign trick: |k| and
/// q·sign(k)); int16 queries by widening the key codes to int16 and <c>vpmaddwd</c>.
/// </summary>
internal static unsafe class X86BlockDot
{
    public static bool IsSupported => Avx2.IsSupported;

    // Σ_{i<32} a[i]·b[i]   a, b int8 in [−127, 127]
    public static int Signed32(sbyte* a, sbyte* b)
    {
        Vector256<sbyte> x = Avx.LoadVector256(a), y = Avx.LoadVector256(b);
        return Vector256.Sum(Products(Avx2.Abs(x), Avx2.Sign(y, x)));
    }

    // Σ_{i<32} q[i]·c[i]   c 4-bit: byte j = c[j] | c[j + 16] << 4
    public static int Nibbles32(sbyte* q, byte* packed)
    {
        Vector128<byte> bytes = Sse2.LoadVector128(packed), mask = Vector128.Create((byte)0x0F);
        Vector128<byte> low = Sse2.And(bytes, mask), high = Sse2.And(Sse2.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte(), mask);
        return Vector256.Sum(Products(Vector256.Create(low, high), Avx.LoadVector256(q)));
    }

    // Σ_{i<32} q[i]·k[i]   q int16, k int8 (vpmovsxbw + vpmaddwd: |q·k| pairs < 2^24)
    public static int Int16Signed32(short* q, sbyte* k) =>
        Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(q), Avx2.ConvertToVector256Int16(k))
            + Avx2.MultiplyAddAdjacent(Avx.LoadVector256(q + 16), Avx2.ConvertToVector256Int16(k + 16)));

    // Σ_{i<32} q[i]·c[i]   q int16, c 4-bit: byte j = c[j] | c[j + 16] << 4
    public static int Int16Nibbles32(short* q, byte* packed) => Vector256.Sum(Int16NibbleLanes(q, packed));

    // sums[b] = Int16Nibbles32(q + 32·b, packed + 16·b), b < blocks: four blocks' lanes reduced together (two rounds of vphaddd)
    public static void Int16NibblesRow32(short* q, byte* packed, int blocks, int* sums)
    {
        int b = 0;
        for (; b + 4 <= blocks; b += 4)
        {
            Vector256<int> p01 = Avx2.HorizontalAdd(Int16NibbleLanes(q + 32 * b, packed + 16 * b), Int16NibbleLanes(q + 32 * b + 32, packed + 16 * b + 16));
            Vector256<int> p23 = Avx2.HorizontalAdd(Int16NibbleLanes(q + 32 * b + 64, packed + 16 * b + 32), Int16NibbleLanes(q + 32 * b + 96, packed + 16 * b + 48));
            Vector256<int> quad = Avx2.HorizontalAdd(p01, p23); // per 128-bit half: the four blocks' partial sums
            Sse2.Store(sums + b, Sse2.Add(quad.GetLower(), quad.GetUpper()));
        }
        for (; b < blocks; b++) sums[b] = Int16Nibbles32(q + 32 * b, packed + 16 * b);
    }

    // eight int32 lanes summing to Σ_{i<32} q[i]·c[i]
    private static Vector256<int> Int16NibbleLanes(short* q, byte* packed)
    {
        Vector128<byte> bytes = Sse2.LoadVector128(packed), mask = Vector128.Create((byte)0x0F);
        Vector128<byte> low = Sse2.And(bytes, mask), high = Sse2.And(Sse2.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte(), mask);
        return Avx2.MultiplyAddAdjacent(Avx.LoadVector256(q), Avx2.ConvertToVector256Int16(low))
            + Avx2.MultiplyAddAdjacent(Avx.LoadVector256(q + 16), Avx2.ConvertToVector256Int16(high));
    }

    // eight int32 lanes, each the sum of four u·s products (|u·s| ≤ 127·127: no int16 saturation in vpmaddubsw pairs)
    private static Vector256<int> Products(Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.IsSupported
        ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s)
        : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
}
