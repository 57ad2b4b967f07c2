using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Trip;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// The TRIP reference pass's inner loop in AVX2, twin of <see cref="Scalar.ScalarTripTile"/> (equal bit for bit): int8
/// dot products by <c>vpsignb</c> + <c>vpmaddubsw</c> + <c>vpmaddwd</c> (pair sums ≤ 2·128·127 never saturate), eight
/// tokens at a time against each weight block.
/// </summary>
internal readonly struct Avx2TripTile : ITripTile
{
    private const int Block = 32; // columns per int8 vector

    /// <summary>Whether this CPU and runtime enable AVX2.</summary>
    public static bool IsSupported => X86.Avx2.IsSupported;

    /// <inheritdoc />
    public static void Multiply(in TripWeightRow w, in TripCodes x, int begin, int end)
    {
        int k = begin;
        for (; k + 8 <= end; k += 8) EightTokens(w, x, k);
        for (; k < end; k++) TripMatMul.OneToken<Avx2TripTile>(w, x, k);
    }

    // result[k..k+7, r]: the same per-group int32 sums and float epilogue (multiply, then add, in group order) as the
    // one-token loop, each weight block loaded once for eight tokens and the eight group sums reduced together
    private static void EightTokens(in TripWeightRow w, in TripCodes operands, int k)
    {
        ref sbyte wp = ref MemoryMarshal.GetReference(w.Codes);
        ref sbyte x = ref operands.Codes[k * operands.Stride];
        int stride = operands.Stride;
        nuint s = (nuint)stride;
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<float> sums = Vector256<float>.Zero; // (8 tokens)
        for (int g = 0; g < w.Scales.Length; g++)
        {
            int begin = g * w.GroupSize, end = Math.Min(begin + w.GroupSize, stride);
            Vector256<int> a0 = Vector256<int>.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int c = begin; c < end; c += Block)
            {
                Vector256<sbyte> wv = Vector256.LoadUnsafe(ref wp, (nuint)c);
                Vector256<byte> magnitude = X86.Avx2.Abs(wv);
                a0 = MultiplyAccumulate(a0, magnitude, wv, Vector256.LoadUnsafe(ref x, (nuint)c), ones);
                a1 = MultiplyAccumulate(a1, magnitude, wv, Vector256.LoadUnsafe(ref x, s + (nuint)c), ones);
                a2 = MultiplyAccumulate(a2, magnitude, wv, Vector256.LoadUnsafe(ref x, 2 * s + (nuint)c), ones);
                a3 = MultiplyAccumulate(a3, magnitude, wv, Vector256.LoadUnsafe(ref x, 3 * s + (nuint)c), ones);
                a4 = MultiplyAccumulate(a4, magnitude, wv, Vector256.LoadUnsafe(ref x, 4 * s + (nuint)c), ones);
                a5 = MultiplyAccumulate(a5, magnitude, wv, Vector256.LoadUnsafe(ref x, 5 * s + (nuint)c), ones);
                a6 = MultiplyAccumulate(a6, magnitude, wv, Vector256.LoadUnsafe(ref x, 6 * s + (nuint)c), ones);
                a7 = MultiplyAccumulate(a7, magnitude, wv, Vector256.LoadUnsafe(ref x, 7 * s + (nuint)c), ones);
            }
            // lane j of the reduced vector = Σ lanes of a_j (hadd within 128-bit halves, then the halves added)
            Vector256<int> h0123 = X86.Avx2.HorizontalAdd(X86.Avx2.HorizontalAdd(a0, a1), X86.Avx2.HorizontalAdd(a2, a3));
            Vector256<int> h4567 = X86.Avx2.HorizontalAdd(X86.Avx2.HorizontalAdd(a4, a5), X86.Avx2.HorizontalAdd(a6, a7));
            Vector256<int> groupSums = X86.Avx2.Add(X86.Avx2.Permute2x128(h0123, h4567, 0x20), X86.Avx2.Permute2x128(h0123, h4567, 0x31));
            // sum += s_w[g] · acc, as two roundings (no fused multiply-add), like the scalar loop
            sums = X86.Avx.Add(sums, X86.Avx.Multiply(Vector256.Create(w.Scales[g]), X86.Avx.ConvertToVector256Single(groupSums)));
        }
        Vector256<float> y = X86.Avx.Multiply(Vector256.LoadUnsafe(ref operands.RowScales[k]), sums);
        for (int j = 0; j < 8; j++) operands.Result[(k + j) * operands.OutFeatures + w.Row] = y.GetElement(j);
    }

    private static Vector256<int> MultiplyAccumulate(Vector256<int> acc, Vector256<byte> magnitude, Vector256<sbyte> w, Vector256<sbyte> x, Vector256<short> ones) =>
        X86.Avx2.Add(acc, X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(x, w)), ones));

    /// <inheritdoc />
    public static int Dot(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> x)
    {
        ref sbyte wp = ref MemoryMarshal.GetReference(w);
        ref sbyte xp = ref MemoryMarshal.GetReference(x);
        Vector256<int> acc = Vector256<int>.Zero;
        Vector256<short> ones = Vector256.Create((short)1);
        for (int c = 0; c < w.Length; c += Block)
        {
            Vector256<sbyte> wv = Vector256.LoadUnsafe(ref wp, (nuint)c);
            Vector256<sbyte> xv = Vector256.LoadUnsafe(ref xp, (nuint)c);
            // |w| · (x · sign(w)) = w · x, pairs summed to int16, then to int32
            Vector256<short> pairs = X86.Avx2.MultiplyAddAdjacent(X86.Avx2.Abs(wv), X86.Avx2.Sign(xv, wv));
            acc = X86.Avx2.Add(acc, X86.Avx2.MultiplyAddAdjacent(pairs, ones));
        }
        return Vector256.Sum(acc);
    }
}
