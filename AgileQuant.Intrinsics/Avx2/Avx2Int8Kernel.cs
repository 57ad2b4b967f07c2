using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 W8A8 / W8A4 kernel, twin of <see cref="Scalar.ScalarInt8Kernel"/>, over the 8-row interleaved copy
/// <see cref="Int8RowBlocks"/>: per 4-column chunk one 32-byte load holds 8 rows × 4 codes, and the broadcast
/// int32 of 4 activation codes meets them in <c>vpmaddubsw(|w|, sign(x, w))</c> + <c>vpmaddwd</c> by 1, so int32
/// lane i accumulates row i: <c>acc = Σ_c w_q · x_q</c> (exact), then <c>y = s_x · s_w · acc</c>. Where the CPU has
/// AVX-VNNI, <c>vpdpbusd</c> replaces the <c>vpmaddubsw</c> + <c>vpmaddwd</c> pair.
/// </summary>
/// <remarks>
/// No int16 saturation: |w| ≤ 128 and |x_q| ≤ 127 (activation codes never reach −128), so a pair sum is
/// ≤ 2·128·127 = 32512 &lt; 2^15; each pair is widened to int32 at once. A tile is one row block × up to 6 tokens;
/// GEMM walks row panels of 8 blocks (L2-resident) × token tiles, GEMV streams the weights once with prefetch.
/// </remarks>
internal sealed unsafe class Avx2Int8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
    private const int TokenTile = 6;

    private const int PanelBlocks = 8;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W8A8) or 4 (W8A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Int8Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2") { }

    /// <inheritdoc />
    public override string Name => $"w8a{ActivationBits}-avx2";

    private protected override int GroupSize(Int8RowMatrix weights) => weights.RowStride;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override int RowBlock => Int8RowBlocks.BlockRows;

    // The matrix is streamed as Int8RowBlocks: repacked once, when the model is built or on the first multiplication.
    private protected override void PrepareWeights(Int8RowMatrix weights) => weights.RepackToRowBlocks();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Int8RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        int* acc = stackalloc int[TokenTile * Int8RowBlocks.BlockRows];
        fixed (sbyte* codes = blocks.Codes)
        fixed (float* scales = blocks.Scales)
        fixed (sbyte* x = xq.Codes)
        {
            int firstBlock = rowBegin / Int8RowBlocks.BlockRows, endBlock = (rowEnd + Int8RowBlocks.BlockRows - 1) / Int8RowBlocks.BlockRows;
            int tokens = xq.Tokens;
            for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
            {
                int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
                for (int t0 = 0; t0 < tokens; t0 += TokenTile)
                {
                    int n = Math.Min(TokenTile, tokens - t0);
                    for (int b = panel; b < panelEnd; b++)
                    {
                        BlockSums(codes + (nint)b * blocks.Chunks * 32, blocks.Chunks, x + (nint)t0 * xq.Stride, xq.Stride, n, acc);
                        Vector256<float> rowScales = X86.Avx.LoadVector256(scales + b * Int8RowBlocks.BlockRows);
                        int row = b * Int8RowBlocks.BlockRows, rows = Math.Min(Int8RowBlocks.BlockRows, w.Rows - row);
                        for (int j = 0; j < n; j++)
                        {
                            // y = s_x · s_w · acc, the scalar twin's order
                            Vector256<float> values = Vector256.Create(xq.Scales[t0 + j]) * (rowScales * X86.Avx.ConvertToVector256Single(X86.Avx.LoadVector256(acc + j * Int8RowBlocks.BlockRows)));
                            float* yRow = y + (nint)(t0 + j) * w.Rows + row;
                            if (rows == Int8RowBlocks.BlockRows) X86.Avx.Store(yRow, values);
                            else for (int i = 0; i < rows; i++) yRow[i] = values.GetElement(i);
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// <see cref="MultiplyRows"/> for another kernel: the AVX-512 kernel hands single-token calls (bandwidth-bound
    /// GEMV) to this kernel's streaming loop, on the thread that calls it.
    /// </summary>
    internal void MultiplyRowsOnCallingThread(Int8RowMatrix w, QuantizedActivations xq, float* y, int rowBegin, int rowEnd) =>
        MultiplyRows(w, xq, null, y, rowBegin, rowEnd);

    /// <summary>acc[j · 8 + i] = Σ_c w_q[8b + i, c] · x_q[j, c] for one row block and n ≤ 6 tokens (stride xStride).</summary>
    internal static void BlockSums(sbyte* block, int chunks, sbyte* x, nint xStride, int n, int* acc)
    {
        switch (n)
        {
            case 6: BlockSums<SixTokens>(block, chunks, x, xStride, acc); break;
            case 5: BlockSums<FiveTokens>(block, chunks, x, xStride, acc); break;
            case 4: BlockSums<FourTokens>(block, chunks, x, xStride, acc); break;
            case 3: BlockSums<ThreeTokens>(block, chunks, x, xStride, acc); break;
            case 2: BlockSums<TwoTokens>(block, chunks, x, xStride, acc); break;
            default: BlockSums<OneToken>(block, chunks, x, xStride, acc); break;
        }
    }

    // acc[j, i] = Σ_k Σ_{c<4} w[i, 4k + c] · x[j, 4k + c], int32 lane i per row.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockSums<N>(sbyte* block, int chunks, sbyte* x, nint xStride, int* acc) where N : struct, ITokenCount
    {
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        for (int k = 0; k < chunks; k++)
        {
            if (N.Value == 1 && (k & 1) == 0) X86.Sse.Prefetch0(block + (nint)k * 32 + 4096); // one line per 64 bytes, a page ahead
            Vector256<sbyte> w = X86.Avx.LoadVector256(block + (nint)k * 32);
            Vector256<byte> magnitude = X86.Avx2.Abs(w);
            sbyte* xk = x + k * Int8RowBlocks.ChunkColumns;
            a0 = AddChunkProducts(a0, magnitude, w, xk, ones);
            if (N.Value > 1) a1 = AddChunkProducts(a1, magnitude, w, xk + xStride, ones);
            if (N.Value > 2) a2 = AddChunkProducts(a2, magnitude, w, xk + 2 * xStride, ones);
            if (N.Value > 3) a3 = AddChunkProducts(a3, magnitude, w, xk + 3 * xStride, ones);
            if (N.Value > 4) a4 = AddChunkProducts(a4, magnitude, w, xk + 4 * xStride, ones);
            if (N.Value > 5) a5 = AddChunkProducts(a5, magnitude, w, xk + 5 * xStride, ones);
        }
        X86.Avx.Store(acc, a0);
        if (N.Value > 1) X86.Avx.Store(acc + 8, a1);
        if (N.Value > 2) X86.Avx.Store(acc + 16, a2);
        if (N.Value > 3) X86.Avx.Store(acc + 24, a3);
        if (N.Value > 4) X86.Avx.Store(acc + 32, a4);
        if (N.Value > 5) X86.Avx.Store(acc + 40, a5);
    }

    // acc + int32 lanes Σ_{c<4} w · x of one chunk: vpdpbusd(|w|, sign(x, w)) with AVX-VNNI, else
    // vpmaddubsw(|w|, sign(x, w)) (pairs ≤ 32512) and vpmaddwd by 1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> AddChunkProducts(Vector256<int> acc, Vector256<byte> magnitude, Vector256<sbyte> w, sbyte* x, Vector256<short> ones)
    {
        Vector256<sbyte> signed = X86.Avx2.Sign(Vector256.Create(*(int*)x).AsSByte(), w);
        return X86.AvxVnni.IsSupported
            ? X86.AvxVnni.MultiplyWideningAndAdd(acc, magnitude, signed)
            : acc + X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, signed), ones);
    }
}
