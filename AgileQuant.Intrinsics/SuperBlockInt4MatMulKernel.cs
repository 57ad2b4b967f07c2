using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Base of the kernels for <see cref="SuperBlockInt4Matrix"/> (ggml's k-quants, Q4_1, IQ4_NL, IQ4_XS): per-token
/// activation quantization as every integer kernel, then per row r, token t and super-block b exact int32 sums
/// <c>I = Σ_{s∈b} sc[r, s] · Σ_{c∈s} u(q[r, c]) · x_q[t, c]</c> and <c>M = Σ_{s∈b} c[r, s] · S[t, s]</c> with
/// <c>S[t, s] = Σ_{c∈s} x_q[t, c]</c>, and one float epilogue per super-block that every kernel evaluates in the same
/// order, <c>f = fma(I, d[r, b], f)</c>, <c>f = fma(−M, e[r, b], f)</c>, <c>y[t, r] = s_x[t] · f</c>, so a SIMD
/// kernel's outputs equal its scalar twin's bit for bit (docs/kernels.md, "Super-block 4-bit formats").
/// </summary>
internal abstract unsafe class SuperBlockInt4MatMulKernel : QuantizedMatMulKernel<SuperBlockInt4Matrix>
{
    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when <paramref name="isSupported"/> is false.</summary>
    private protected SuperBlockInt4MatMulKernel(int activationBits, int threads, bool isSupported, string requirement)
        : base(activationBits, threads, isSupported, requirement) { }

    // Activation groups are the super-blocks (their scales with per-group activation scales, as llama.cpp's Q8_K blocks); the
    // base's group sums are unused: the kernels take sub-block sums of their own (PrepareActivations).
    private protected override int GroupSize(SuperBlockInt4Matrix weights) => weights.Scheme.SuperBlockSize;

    private protected override bool TakesGroupScales(SuperBlockInt4Matrix weights) => true;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // A thread's share of rows starts on a pair of row blocks, the unit of the layout.
    private protected override int RowBlock => SuperBlockInt4Matrix.PairRows;

    // S[t, s] (tokens, SubSumStride) for the correction term, when the scheme has one; null otherwise.
    private protected override object? PrepareActivations(SuperBlockInt4Matrix weights, QuantizedActivations xq) =>
        weights.Scheme.HasCorrection ? SubBlockSums.Compute(xq, weights.Scheme.SubBlockSize, weights.SubBlocks) : null;

    private protected sealed override void MultiplyRows(SuperBlockInt4Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        var sums = callState as SubBlockSums;
        fixed (byte* packed = w.Packed)
        fixed (sbyte* subScales = w.SubScales)
        fixed (sbyte* corrections = w.Corrections)
        fixed (ushort* superScales = w.SuperScales)
        fixed (ushort* correctionScales = w.CorrectionScales)
        fixed (sbyte* codes = xq.Codes)
        fixed (short* subSums = sums?.Values)
        fixed (float* tokenScales = xq.Scales)
        fixed (float* groupScales = xq.GroupScales)
        {
            var call = new SuperBlockInt4Call(w, packed, subScales, corrections, superScales, correctionScales,
                codes, xq.Stride, xq.Tokens, subSums, sums?.Stride ?? 0, groupScales, xq.GroupCount, tokenScales, y);
            MultiplyPairs(call, rowBegin / SuperBlockInt4Matrix.PairRows, (rowEnd + SuperBlockInt4Matrix.PairRows - 1) / SuperBlockInt4Matrix.PairRows);
        }
    }

    /// <summary>y[t, r] for every token and the rows of block pairs [<paramref name="firstPair"/>, <paramref name="endPair"/>).</summary>
    private protected abstract void MultiplyPairs(in SuperBlockInt4Call call, int firstPair, int endPair);

    /// <summary>
    /// The epilogue of one super-block, the order every kernel follows: <c>f = fma(I, d, f)</c>, then, with a correction,
    /// <c>f = fma(−M, e, f)</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float SuperBlockEpilogue(float f, int sum, float d, int correction, float e, bool hasCorrection)
    {
        f = MathF.FusedMultiplyAdd(sum, d, f);
        return hasCorrection ? MathF.FusedMultiplyAdd(-(float)correction, e, f) : f;
    }
}

/// <summary>
/// Activation code sums per (token, sub-block), <c>S[t, s] = Σ_{c∈s} x_q[t, c]</c> (|S| ≤ 32 · 127), as int16 for the
/// kernels' <c>vpmaddwd</c> / <c>SMLAL</c> against the int8 corrections; two zero entries pad each token's row, so sub-blocks
/// 2j and 2j + 1 are read as one int32 even past the last. Per calling thread, refilled by every call.
/// </summary>
internal sealed class SubBlockSums
{
    [ThreadStatic] private static SubBlockSums? t_current;

    /// <summary>S (tokens, <see cref="Stride"/>).</summary>
    public short[] Values { get; private set; } = [];

    /// <summary>Entries per token: sub-blocks + 2.</summary>
    public int Stride { get; private set; }

    /// <summary>The calling thread's sums of <paramref name="xq"/>'s codes over sub-blocks of <paramref name="subBlockSize"/> columns.</summary>
    public static SubBlockSums Compute(QuantizedActivations xq, int subBlockSize, int subBlocks)
    {
        SubBlockSums sums = t_current ??= new SubBlockSums();
        int stride = subBlocks + 2;
        if (sums.Values.Length < xq.Tokens * stride) sums.Values = new short[xq.Tokens * stride];
        sums.Stride = stride;
        for (int t = 0; t < xq.Tokens; t++)
        {
            ReadOnlySpan<sbyte> codes = xq.Codes.AsSpan(t * xq.Stride, subBlocks * subBlockSize);
            Span<short> row = sums.Values.AsSpan(t * stride, stride);
            for (int s = 0; s < subBlocks; s++) row[s] = Sum(codes.Slice(s * subBlockSize, subBlockSize));
            row[subBlocks] = row[subBlocks + 1] = 0;
        }
        return sums;
    }

    // Σ of 16 or 32 codes (|Σ| ≤ 4064).
    private static short Sum(ReadOnlySpan<sbyte> codes)
    {
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<short> sum = default;
            for (int i = 0; i < codes.Length; i += 16)
            {
                Vector128<sbyte> v = Vector128.Create(codes.Slice(i, 16));
                sum += Vector128.WidenLower(v) + Vector128.WidenUpper(v);
            }
            return Vector128.Sum(sum);
        }
        int total = 0;
        foreach (sbyte code in codes) total += code;
        return (short)total;
    }
}

/// <summary>Pointers and shape of one <see cref="SuperBlockInt4MatMulKernel"/> call, shared by every ISA's tiles.</summary>
internal readonly unsafe struct SuperBlockInt4Call(SuperBlockInt4Matrix w, byte* packed, sbyte* subScales, sbyte* corrections,
    ushort* superScales, ushort* correctionScales, sbyte* codes, int codeStride, int tokens, short* subSums, int subSumStride,
    float* groupScales, int groupScaleStride, float* tokenScales, float* y)
{
    /// <summary>The matrix (the scalar twin reads it through its accessors).</summary>
    public readonly SuperBlockInt4Matrix Matrix = w;

    /// <summary>Nibbles (pairs, chunks, 64).</summary>
    public readonly byte* Packed = packed;

    /// <summary>sc (pairs, sub-blocks, 16).</summary>
    public readonly sbyte* SubScales = subScales;

    /// <summary>c (pairs, super-blocks, correction pairs, 16, 2); null without correction.</summary>
    public readonly sbyte* Corrections = corrections;

    /// <summary>d (pairs, super-blocks, 16) half bits.</summary>
    public readonly ushort* SuperScales = superScales;

    /// <summary>e (pairs, super-blocks, 16) half bits; null without correction.</summary>
    public readonly ushort* CorrectionScales = correctionScales;

    /// <summary>Activation codes (tokens, CodeStride), column order, zero padded.</summary>
    public readonly sbyte* Codes = codes;

    /// <summary>S (tokens, SubSumStride); null without correction.</summary>
    public readonly short* SubSums = subSums;

    /// <summary>Activation scale s_x,b per (token, super-block), (tokens, GroupScaleStride); all 1 with per-token scales.</summary>
    public readonly float* GroupScales = groupScales;

    /// <summary>Entries of <see cref="GroupScales"/> per token.</summary>
    public readonly int GroupScaleStride = groupScaleStride;

    /// <summary>Activation scale s_x per token (1 with group scales).</summary>
    public readonly float* TokenScales = tokenScales;

    /// <summary>Output (tokens, Rows).</summary>
    public readonly float* Y = y;

    /// <summary>The 16 codebook values, or null.</summary>
    public readonly sbyte[]? Codebook = w.Scheme.CodebookArray;

    /// <summary>Codes per token row.</summary>
    public readonly int CodeStride = codeStride;

    /// <summary>Entries of <see cref="SubSums"/> per token.</summary>
    public readonly int SubSumStride = subSumStride;

    /// <summary>Tokens of the call.</summary>
    public readonly int Tokens = tokens;

    /// <summary>Rows of the matrix.</summary>
    public readonly int Rows = w.Rows;

    /// <summary>8-column chunks per row.</summary>
    public readonly int Chunks = w.Chunks;

    /// <summary>Sub-blocks per row.</summary>
    public readonly int SubBlocks = w.SubBlocks;

    /// <summary>Super-blocks per row.</summary>
    public readonly int SuperBlocks = w.SuperBlocks;

    /// <summary>Sub-blocks per super-block.</summary>
    public readonly int SubBlocksPerSuperBlock = w.Scheme.SubBlocksPerSuperBlock;

    /// <summary>Correction pairs per super-block.</summary>
    public readonly int CorrectionPairs = w.CorrectionPairs;

    /// <summary>Rows stored of pair <paramref name="pair"/>: 16, fewer for the last.</summary>
    public int RowsOfPair(int pair) => Math.Min(SuperBlockInt4Matrix.PairRows, Rows - pair * SuperBlockInt4Matrix.PairRows);
}

/// <summary>Chunks of 8 columns per sub-block, a type parameter so the kernels' inner loops unroll.</summary>
internal interface ISubBlockChunks
{
    /// <summary>2 (16 columns) or 4 (32 columns).</summary>
    static abstract int Value { get; }
}

/// <summary>Sub-blocks of 16 columns.</summary>
internal readonly struct TwoChunks : ISubBlockChunks { public static int Value => 2; }

/// <summary>Sub-blocks of 32 columns.</summary>
internal readonly struct FourChunks : ISubBlockChunks { public static int Value => 4; }

/// <summary>Whether the scheme subtracts the correction term, a type parameter so the kernels drop it when absent.</summary>
internal interface ICorrectionTerm
{
    /// <summary>True when the matrix has corrections.</summary>
    static abstract bool Present { get; }
}

/// <summary>Minimums or a code offset: <c>M</c> is computed and subtracted.</summary>
internal readonly struct WithCorrection : ICorrectionTerm { public static bool Present => true; }

/// <summary>No correction (codebook schemes, schemes with neither minimums nor offset).</summary>
internal readonly struct NoCorrection : ICorrectionTerm { public static bool Present => false; }
