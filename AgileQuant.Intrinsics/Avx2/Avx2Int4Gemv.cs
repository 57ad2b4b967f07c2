using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// The one-token (decode) path of <see cref="Avx2Int4Kernel"/>, a pure weight stream over <see cref="Int4RowBlocks"/>:
/// <c>y[8b + i] = s_x · Σ_s s_w[i, g(s)] · (Σ_{c∈s} nibble[i, c] · x_q[c] − z[i, g(s)] · Σ_{c∈s} x_q[c])</c> for row
/// blocks b, 32-column segments s. Same integer arithmetic and float order as the kernel's tiles (so the same outputs),
/// specialized for decode: whole segments unrolled, group scales read from the 16-bit copy
/// <see cref="Int4RowBlocks.HalfScales"/> when the matrix has one (11% fewer bytes per weight for symmetric groups of
/// 32: 0.5625 instead of 0.625), the symmetric zero point applied as one broadcast subtraction, both blocks of a pair
/// read in one pass (each 64-byte line once), and the weight and scale streams prefetched one page ahead.
/// </summary>
/// <remarks>
/// Decode is bound by the bytes streamed per token, not by arithmetic: with FP32 scales a symmetric group of 32 is
/// 16 bytes of nibbles plus 4 of scale, with FP16 scales plus 2. The FP16 copy exists only where every scale is a
/// finite half exactly (e.g. weights read from GGUF Q4_0, whose scales are FP16), so both paths give the same floats.
/// AVX-VNNI is not used here: at one token the loop waits on memory, not on the multiply-adds.
/// </remarks>
internal static unsafe class Avx2Int4Gemv
{
    /// <summary>Columns per activation-sum segment (4 chunks; the int16 lanes' safe span).</summary>
    private const int SegmentColumns = 32;

    /// <summary>Bytes of packed nibbles per block pair and segment (4 chunks of 64 bytes).</summary>
    private const int SegmentBytes = SegmentColumns / Int4RowBlocks.ChunkColumns * Int4RowBlocks.ChunkStride;

    /// <summary>How far ahead (bytes) the weight stream is prefetched (the hardware prefetcher stops at 4 KiB pages).</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>
    /// y[r] for the rows of row blocks [<paramref name="firstBlock"/>, <paramref name="endBlock"/>) (<paramref name="firstBlock"/>
    /// even) and the single token of <paramref name="call"/>; group scales from the call's halves
    /// (<see cref="Int4RowBlocks.HalfScales"/>) when the matrix has that exact copy, else from its float scales.
    /// </summary>
    public static void Multiply<TMode>(in Int4KernelCall call, int firstBlock, int endBlock) where TMode : struct, IActivationScaleMode
    {
        Debug.Assert(firstBlock % 2 == 0);
        if (call.HalfScales is not null)
        {
            if (call.ZeroPoints is null) Run<HalfScales, SymmetricZero, TMode>(call, (byte*)call.HalfScales, firstBlock, endBlock);
            else Run<HalfScales, GroupZeroPoints, TMode>(call, (byte*)call.HalfScales, firstBlock, endBlock);
            return;
        }
        if (call.ZeroPoints is null) Run<SingleScales, SymmetricZero, TMode>(call, (byte*)call.Scales, firstBlock, endBlock);
        else Run<SingleScales, GroupZeroPoints, TMode>(call, (byte*)call.Scales, firstBlock, endBlock);
    }

    // y[8b + i] = s_x · Σ_s s_w[i, g(s)] · (Σ_{c∈s} nibble[i, c] · x_q[c] − z[i, g(s)] · Σ_{c∈s} x_q[c]), b in [first, end),
    // both blocks of a pair in one pass (f0: block b, the low 32 bytes of each 64-byte chunk; f1: block b + 1, the high 32);
    // with per-group activation scales s_w[i, g(s)] · s_x[s] and s_x = 1 (Avx2Int4Kernel.ScaleAdd).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TScales, TZero, TMode>(in Int4KernelCall s, byte* scaleBase, int firstBlock, int endBlock)
        where TScales : struct, IGroupScales where TZero : struct, IZeroCorrection where TMode : struct, IActivationScaleMode
    {
        Vector256<byte> lowNibbles = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        int chunks = s.Chunks, groups = s.Groups;
        int segmentsPerGroupShift = s.GroupShift;
        int fullSegments = chunks / 4, tailChunks = chunks % 4;
        nint pairBytes = (nint)chunks * Int4RowBlocks.ChunkStride;
        nint scaleBytesPerPair = (nint)groups * Int4RowBlocks.GroupStride * TScales.ElementBytes;
        const int UpperScale = Int4RowBlocks.BlockRows; // entries from a pair's lower-block scales (zero points) to its upper's
        for (int b = firstBlock; b < endBlock; b += 2)
        {
            nint pair = b >> 1;
            byte* weights = s.Packed + pair * pairBytes; // (chunks, 2 blocks, 32)
            byte* pairScales = scaleBase + pair * scaleBytesPerPair; // (groups, 2 blocks, 8)
            byte* zeros = s.ZeroPoints + pair * groups * Int4RowBlocks.GroupStride; // (groups, 2 blocks, 8), unused when symmetric
            Vector256<float> f0 = default, f1 = default;
            int segment = 0;
            for (; segment < fullSegments; segment++)
            {
                byte* chunk = weights + (nint)segment * SegmentBytes;
                int g = segment >> segmentsPerGroupShift;
                byte* scale = pairScales + (nint)g * Int4RowBlocks.GroupStride * TScales.ElementBytes;
                X86.Sse.Prefetch0(chunk + PrefetchBytes);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 64);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 128);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 192);
                X86.Sse.Prefetch0(scale + PrefetchBytes / 4);
                sbyte* xs = s.Codes + segment * SegmentColumns;
                Vector256<short> h0 = ChunkProducts(chunk, xs, lowNibbles) + ChunkProducts(chunk + 64, xs + 8, lowNibbles)
                    + ChunkProducts(chunk + 128, xs + 16, lowNibbles) + ChunkProducts(chunk + 192, xs + 24, lowNibbles);
                Vector256<short> h1 = ChunkProducts(chunk + 32, xs, lowNibbles) + ChunkProducts(chunk + 96, xs + 8, lowNibbles)
                    + ChunkProducts(chunk + 160, xs + 16, lowNibbles) + ChunkProducts(chunk + 224, xs + 24, lowNibbles);
                int sum = s.SegmentSums[segment];
                f0 = Avx2Int4Kernel.ScaleAdd<TMode>(X86.Avx2.MultiplyAddAdjacent(h0, ones) - TZero.Correction(zeros, g, sum), TScales.Load(scale), s.GroupScales + segment, f0);
                f1 = Avx2Int4Kernel.ScaleAdd<TMode>(X86.Avx2.MultiplyAddAdjacent(h1, ones) - TZero.Correction(zeros + UpperScale, g, sum),
                    TScales.Load(scale + UpperScale * TScales.ElementBytes), s.GroupScales + segment, f1);
            }
            if (tailChunks > 0)
            {
                byte* chunk = weights + (nint)segment * SegmentBytes;
                int g = segment >> segmentsPerGroupShift;
                byte* scale = pairScales + (nint)g * Int4RowBlocks.GroupStride * TScales.ElementBytes;
                sbyte* xs = s.Codes + segment * SegmentColumns;
                Vector256<short> h0 = default, h1 = default;
                for (int k = 0; k < tailChunks; k++)
                {
                    h0 += ChunkProducts(chunk + k * Int4RowBlocks.ChunkStride, xs + k * Int4RowBlocks.ChunkColumns, lowNibbles);
                    h1 += ChunkProducts(chunk + k * Int4RowBlocks.ChunkStride + 32, xs + k * Int4RowBlocks.ChunkColumns, lowNibbles);
                }
                int sum = s.SegmentSums[segment];
                f0 = Avx2Int4Kernel.ScaleAdd<TMode>(X86.Avx2.MultiplyAddAdjacent(h0, ones) - TZero.Correction(zeros, g, sum), TScales.Load(scale), s.GroupScales + segment, f0);
                f1 = Avx2Int4Kernel.ScaleAdd<TMode>(X86.Avx2.MultiplyAddAdjacent(h1, ones) - TZero.Correction(zeros + UpperScale, g, sum),
                    TScales.Load(scale + UpperScale * TScales.ElementBytes), s.GroupScales + segment, f1);
            }
            StoreBlock(s, b, f0 * s.TokenScales[0]);
            if (b + 1 < endBlock) StoreBlock(s, b + 1, f1 * s.TokenScales[0]); // else block b + 1 is the zero padding block
        }
    }

    // y[8b .. 8b + 8) = values, the rows past the matrix's end dropped.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBlock(in Int4KernelCall s, int b, Vector256<float> values)
    {
        int row = b * Int4RowBlocks.BlockRows, rows = Math.Min(Int4RowBlocks.BlockRows, s.Rows - row);
        if (rows == Int4RowBlocks.BlockRows) X86.Avx.Store(s.Y + row, values);
        else for (int i = 0; i < rows; i++) s.Y[row + i] = values.GetElement(i);
    }

    // int16 lanes: Σ nibble · x_q over one chunk of 8 rows × 8 columns, columns 0..3 (low nibbles) plus 4..7 (high), each pair ≤ 3810.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ChunkProducts(byte* chunk, sbyte* x, Vector256<byte> lowNibbles)
    {
        Vector256<byte> pairs = X86.Avx.LoadVector256(chunk);
        Vector256<byte> low = pairs & lowNibbles;
        Vector256<byte> high = X86.Avx2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
        return X86.Avx2.MultiplyAddAdjacent(low, Vector256.Create(*(int*)x).AsSByte())
            + X86.Avx2.MultiplyAddAdjacent(high, Vector256.Create(*(int*)(x + 4)).AsSByte());
    }

    /// <summary>The scales of one (row block, group): 8 values, one per row.</summary>
    internal interface IGroupScales
    {
        /// <summary>Bytes per stored scale.</summary>
        static abstract int ElementBytes { get; }

        /// <summary>The 8 rows' scales stored at <paramref name="at"/>, as floats.</summary>
        static abstract Vector256<float> Load(byte* at);
    }

    /// <summary>Scales stored as floats (<see cref="Int4RowBlocks.Scales"/>).</summary>
    internal readonly struct SingleScales : IGroupScales
    {
        public static int ElementBytes => sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* at) => X86.Avx.LoadVector256((float*)at);
    }

    /// <summary>Scales stored as IEEE halves (<see cref="Int4RowBlocks.HalfScales"/>), widened exactly.</summary>
    internal readonly struct HalfScales : IGroupScales
    {
        public static int ElementBytes => sizeof(ushort);

        // float(h) = sign(h) | bits(h & 0x7FFF) << 13 · 2^112: exact for every finite half, subnormals included
        // (the shifted magnitude is the half's value · 2^−112 as a float, normal or subnormal).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* at)
        {
            Vector256<int> bits = X86.Avx2.ConvertToVector256Int32((ushort*)at);
            Vector256<float> magnitude = ((bits & Vector256.Create(0x7FFF)) << 13).AsSingle() * Vector256.Create(TwoToThe112);
            return (magnitude.AsInt32() | (bits & Vector256.Create(0x8000)) << 16).AsSingle();
        }

        private static float TwoToThe112 => BitConverter.Int32BitsToSingle((127 + 112) << 23);
    }

    /// <summary>The zero-point term z[i, g] · Σ_{c∈s} x_q[c] of one segment, 8 rows.</summary>
    private interface IZeroCorrection
    {
        /// <summary>z · <paramref name="activationSum"/> for the 8 rows of group <paramref name="g"/> (the block's group 0 zero points at <paramref name="zeros"/>, groups <see cref="Int4RowBlocks.GroupStride"/> apart).</summary>
        static abstract Vector256<int> Correction(byte* zeros, int g, int activationSum);
    }

    /// <summary>Symmetric codes: z = 8 for every row, one broadcast.</summary>
    private readonly struct SymmetricZero : IZeroCorrection
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Correction(byte* zeros, int g, int activationSum) =>
            Vector256.Create(PackedInt4Matrix.SymmetricZeroPoint * activationSum);
    }

    /// <summary>Asymmetric codes: a zero point byte per (row, group).</summary>
    private readonly struct GroupZeroPoints : IZeroCorrection
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Correction(byte* zeros, int g, int activationSum) =>
            X86.Avx2.MultiplyLow(X86.Avx2.ConvertToVector256Int32(zeros + g * Int4RowBlocks.GroupStride), Vector256.Create(activationSum));
    }
}
