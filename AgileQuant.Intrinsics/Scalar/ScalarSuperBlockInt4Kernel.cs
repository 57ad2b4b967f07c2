using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>
/// Scalar kernel for <see cref="SuperBlockInt4Matrix"/> with 8-bit or 4-bit activations, the specification of the SIMD
/// ones: per row r, token t and super-block b, in exact int32,
/// <c>I = Σ_{s∈b} sc[r, s] · Σ_{c∈s} u(q[r, c]) · x_q[t, c]</c> (u = the codebook value, or the code itself) and
/// <c>M = Σ_{s∈b} c[r, s] · Σ_{c∈s} x_q[t, c]</c>; then <c>f = fma(I, d · s_x[t, b], f)</c>, <c>f = fma(−M, e · s_x[t, b], f)</c>
/// over the super-blocks in order and <c>y[t, r] = s_x[t] · f</c> (s_x[t, b] the per-super-block activation scales, all 1
/// with per-token scales; s_x[t] the token scale, 1 with group scales).
/// </summary>
internal sealed unsafe class ScalarSuperBlockInt4Kernel : SuperBlockInt4MatMulKernel
{
    /// <summary>Creates the kernel for 8-bit or 4-bit activations; runs on the calling thread.</summary>
    public ScalarSuperBlockInt4Kernel(int activationBits = 8) : base(activationBits, threads: 1, isSupported: true, requirement: "nothing") { }

    /// <inheritdoc />
    public override string Name => $"sbw4a{ActivationBits}-scalar";

    private protected override void MultiplyPairs(in SuperBlockInt4Call call, int firstPair, int endPair)
    {
        SuperBlockInt4Matrix w = call.Matrix;
        var values = new int[w.Cols]; // u(q[r, c]) of one row
        int rowEnd = Math.Min(w.Rows, endPair * SuperBlockInt4Matrix.PairRows);
        for (int r = firstPair * SuperBlockInt4Matrix.PairRows; r < rowEnd; r++)
        {
            for (int c = 0; c < w.Cols; c++) values[c] = w.Scheme.KernelValue(w.Code(r, c));
            for (int t = 0; t < call.Tokens; t++)
            {
                var x = new ReadOnlySpan<sbyte>(call.Codes + (nint)t * call.CodeStride, w.Cols);
                var groupScales = new ReadOnlySpan<float>(call.GroupScales + (nint)t * call.GroupScaleStride, w.SuperBlocks);
                call.Y[(nint)t * w.Rows + r] = call.TokenScales[t] * RowSum(w, r, values, x, groupScales);
            }
        }
    }

    /// <summary>
    /// f of row r for the codes x (the class summary's sums and epilogue), given the row's kernel values u(q) and the token's
    /// activation scale per super-block (all 1 with per-token scales).
    /// </summary>
    internal static float RowSum(SuperBlockInt4Matrix w, int r, ReadOnlySpan<int> values, ReadOnlySpan<sbyte> x, ReadOnlySpan<float> groupScales)
    {
        float f = 0;
        for (int b = 0; b < w.SuperBlocks; b++)
        {
            (int sum, int correction) = SuperBlockSums(w, r, b, values, x);
            f = SuperBlockEpilogue(f, sum, (float)w.SuperScale(r, b) * groupScales[b], correction, w.KernelCorrectionScale(r, b) * groupScales[b], w.Scheme.HasCorrection);
        }
        return f;
    }

    /// <summary>The exact int32 sums (I, M) of super-block b of row r for the codes x, given the row's kernel values u(q).</summary>
    internal static (int Sum, int Correction) SuperBlockSums(SuperBlockInt4Matrix w, int r, int b, ReadOnlySpan<int> values, ReadOnlySpan<sbyte> x)
    {
        int subSize = w.Scheme.SubBlockSize, perSuper = w.Scheme.SubBlocksPerSuperBlock;
        int sum = 0, correction = 0;
        for (int s = b * perSuper; s < (b + 1) * perSuper; s++)
        {
            int products = 0, codes = 0;
            for (int c = s * subSize; c < (s + 1) * subSize; c++)
            {
                products += values[c] * x[c];
                codes += x[c];
            }
            sum += w.SubScale(r, s) * products;
            correction += w.KernelCorrection(r, s) * codes;
        }
        return (sum, correction);
    }
}
