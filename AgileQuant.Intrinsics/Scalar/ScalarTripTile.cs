using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>The TRIP reference pass's inner loop in scalar code: the specification of <see cref="Avx2.Avx2TripTile"/>.</summary>
internal readonly struct ScalarTripTile : ITripTile
{
    /// <inheritdoc />
    public static int Dot(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> x)
    {
        int sum = 0;
        for (int c = 0; c < w.Length; c++) sum += w[c] * x[c];
        return sum;
    }

    /// <inheritdoc />
    public static void Multiply(in TripWeightRow w, in TripCodes x, int begin, int end)
    {
        for (int k = begin; k < end; k++) TripMatMul.OneToken<ScalarTripTile>(w, x, k);
    }
}
