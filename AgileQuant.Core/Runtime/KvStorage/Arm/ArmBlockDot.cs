using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Core.Runtime.KvStorage.Arm;

/// <summary>
/// AdvSimd block dot products of 32 query codes (<see cref="BlockDot"/>): int8 queries by <c>sdot</c> where the core has it
/// (Dp), else <c>smull</c>/<c>smlal2</c> into int16 (two products of |x| ≤ 127 fit) and a pairwise widening add; int16
/// queries by widening the key codes and <c>smlal</c>/<c>smlal2</c> into int32.
/// </summary>
internal static unsafe class ArmBlockDot
{
    public static bool IsSupported => AdvSimd.Arm64.IsSupported;

    // Σ_{i<32} a[i]·b[i]   a, b int8 in [−127, 127]
    public static int Signed32(sbyte* a, sbyte* b) =>
        Dot(AdvSimd.LoadVector128(a), AdvSimd.LoadVector128(b), AdvSimd.LoadVector128(a + 16), AdvSimd.LoadVector128(b + 16));

    // Σ_{i<32} q[i]·c[i]   c 4-bit: byte j = c[j] | c[j + 16] << 4
    public static int Nibbles32(sbyte* q, byte* packed)
    {
        Vector128<byte> bytes = AdvSimd.LoadVector128(packed);
        Vector128<sbyte> low = AdvSimd.And(bytes, Vector128.Create((byte)0x0F)).AsSByte(), high = AdvSimd.ShiftRightLogical(bytes, 4).AsSByte();
        return Dot(low, AdvSimd.LoadVector128(q), high, AdvSimd.LoadVector128(q + 16));
    }

    // Σ_{i<32} q[i]·k[i]   q int16, k int8 (sxtl + smlal/smlal2 into int32)
    public static int Int16Signed32(short* q, sbyte* k)
    {
        Vector128<int> sum = Vector128<int>.Zero;
        for (int i = 0; i < 32; i += 8)
            sum = Accumulate(sum, AdvSimd.LoadVector128(q + i), AdvSimd.SignExtendWideningLower(AdvSimd.LoadVector64(k + i)));
        return AdvSimd.Arm64.AddAcross(sum).ToScalar();
    }

    // Σ_{i<32} q[i]·c[i]   q int16, c 4-bit: byte j = c[j] | c[j + 16] << 4
    public static int Int16Nibbles32(short* q, byte* packed)
    {
        Vector128<byte> bytes = AdvSimd.LoadVector128(packed);
        Vector128<byte> low = AdvSimd.And(bytes, Vector128.Create((byte)0x0F)), high = AdvSimd.ShiftRightLogical(bytes, 4);
        Vector128<int> sum = Accumulate(Vector128<int>.Zero, AdvSimd.LoadVector128(q), AdvSimd.ZeroExtendWideningLower(low.GetLower()).AsInt16());
        sum = Accumulate(sum, AdvSimd.LoadVector128(q + 8), AdvSimd.ZeroExtendWideningUpper(low).AsInt16());
        sum = Accumulate(sum, AdvSimd.LoadVector128(q + 16), AdvSimd.ZeroExtendWideningLower(high.GetLower()).AsInt16());
        sum = Accumulate(sum, AdvSimd.LoadVector128(q + 24), AdvSimd.ZeroExtendWideningUpper(high).AsInt16());
        return AdvSimd.Arm64.AddAcross(sum).ToScalar();
    }

    // sum + q·k over 8 int16 lanes, widened to int32
    private static Vector128<int> Accumulate(Vector128<int> sum, Vector128<short> q, Vector128<short> k) =>
        AdvSimd.MultiplyWideningUpperAndAdd(AdvSimd.MultiplyWideningLowerAndAdd(sum, q.GetLower(), k.GetLower()), q, k);

    // Σ a0·b0 + a1·b1 over 16 lanes each
    private static int Dot(Vector128<sbyte> a0, Vector128<sbyte> b0, Vector128<sbyte> a1, Vector128<sbyte> b1)
    {
        Vector128<int> sum;
        if (Dp.IsSupported) sum = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, a0, b0), a1, b1);
        else
        {
            Vector128<short> p0 = AdvSimd.MultiplyWideningUpperAndAdd(AdvSimd.MultiplyWideningLower(a0.GetLower(), b0.GetLower()), a0, b0);
            Vector128<short> p1 = AdvSimd.MultiplyWideningUpperAndAdd(AdvSimd.MultiplyWideningLower(a1.GetLower(), b1.GetLower()), a1, b1);
            sum = AdvSimd.Add(AdvSimd.AddPairwiseWidening(p0), AdvSimd.AddPairwiseWidening(p1));
        }
        return AdvSimd.Arm64.AddAcross(sum).ToScalar();
    }
}
