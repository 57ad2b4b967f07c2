using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>Output of the 4-bit kernels' 8-row blocks (<see cref="Formats.Int4RowBlocks"/>, <see cref="Formats.SuperBlockInt4Matrix"/>).</summary>
internal static unsafe class AdvSimdEightRows
{
    /// <summary>Writes the first min(<paramref name="rows"/>, 8) of 8 row results to <paramref name="y"/>: two vector stores for a whole block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector128<float> rows0To3, Vector128<float> rows4To7, float* y, int rows)
    {
        if (rows >= 8)
        {
            Arm.AdvSimd.Store(y, rows0To3);
            Arm.AdvSimd.Store(y + 4, rows4To7);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = i < 4 ? rows0To3.GetElement(i) : rows4To7.GetElement(i - 4);
    }
}
