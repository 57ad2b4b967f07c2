using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Core.Runtime.KvStorage.Arm;

/// <summary>
/// AdvSimd block dot products of 32 int8 query codes (<see cref="BlockDot"/>): <c>sdot</c> where the core has it (Dp),
/// else <c>smull</c>/<c>smlal2</c> into int16 (two products of |x| ≤ 127 fit) and a pairwise widening add.
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
