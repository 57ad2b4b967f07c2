using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// The one-token (decode) path of <see cref="Avx512Int4Kernel"/>: the weight stream of <see cref="Avx2.Avx2Int4Gemv"/>
/// over the block pairs of <see cref="Int4RowBlocks"/>, one pair per zmm (16 rows; lanes 0..7 the lower block, 8..15 the
/// upper), <c>y[r] = s_x · Σ_s s_w[r, g(s)] · (Σ_{c∈s} nibble[r, c] · x_q[c] − z[r, g(s)] · Σ_{c∈s} x_q[c])</c>.
/// </summary>
/// <remarks>
/// Same integer sums and float order per row as the AVX2 stream and the GEMM tiles (so the same outputs). Why: at one
/// token a core running the AVX2 stream was bound by instructions (it read less than memory delivers to two cores:
/// docs/kernels.md, "Decode stream"); one zmm instruction does the work of two, each broadcast activation feeds 16
/// rows, and the scales of both blocks are widened at once. A pair's chunk is one aligned 64-byte line, so each core
/// reads one weight stream (plus the pair's scale and zero-point streams) with one load per line.
/// Group scales come from <see cref="Int4RowBlocks.HalfScales"/> where the matrix has that exact 16-bit copy
/// (0.5625 byte per weight for symmetric groups of 32), else from the floats.
/// </remarks>
internal static unsafe class Avx512Int4Gemv
{
    /// <summary>Columns per activation-sum segment (4 chunks; the int16 lanes' safe span).</summary>
    private const int SegmentColumns = 32;

    /// <summary>Bytes of packed nibbles per block pair and segment (4 chunks of 64 bytes).</summary>
    private const int SegmentBytes = SegmentColumns / Int4RowBlocks.ChunkColumns * Int4RowBlocks.ChunkStride;

    /// <summary>
    /// How far ahead (bytes) the weight stream is prefetched into L1, one prefetch per 64-byte line: the hardware
    /// prefetcher stops at 4 KiB pages, so one page ahead keeps lines in flight across every page boundary. Of the
    /// distances and targets measured (docs/kernels.md, "Decode stream"), one page ahead into L1 was as good as any,
    /// and better than none, than 2 KiB and than L2 only.
    /// </summary>
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

    // y[r] = s_x · Σ_s s_w[r, g(s)] · (Σ_{c∈s} nibble[r, c] · x_q[c] − z[r, g(s)] · Σ_{c∈s} x_q[c]) for the 16 rows of pair b / 2
    // (s_w[r, g(s)] · s_x[s] with per-group activation scales, s_x = 1: Avx512Int4Kernel.ScaleAdd).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TScales, TZero, TMode>(in Int4KernelCall s, byte* scaleBase, int firstBlock, int endBlock)
        where TScales : struct, IGroupScales where TZero : struct, IZeroCorrection where TMode : struct, IActivationScaleMode
    {
        Vector512<byte> lowNibbles = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        int chunks = s.Chunks, groups = s.Groups;
        int segmentsPerGroupShift = s.GroupShift;
        int fullSegments = chunks / 4, tailChunks = chunks % 4;
        nint pairBytes = (nint)chunks * Int4RowBlocks.ChunkStride;
        nint scaleBytesPerPair = (nint)groups * Int4RowBlocks.GroupStride * TScales.ElementBytes;
        nint zerosPerPair = (nint)groups * Int4RowBlocks.GroupStride;
        for (int b = firstBlock; b < endBlock; b += 2)
        {
            nint pair = b >> 1;
            byte* weights = s.Packed + pair * pairBytes; // (chunks, 64): chunk k of block b, then of block b + 1
            byte* scales = scaleBase + pair * scaleBytesPerPair; // (groups, 16)
            byte* zeros = s.ZeroPoints + pair * zerosPerPair; // (groups, 16), unused when symmetric
            Vector512<float> f = default;
            int segment = 0;
            for (; segment < fullSegments; segment++)
            {
                byte* chunk = weights + (nint)segment * SegmentBytes;
                int g = segment >> segmentsPerGroupShift;
                X86.Sse.Prefetch0(chunk + PrefetchBytes);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 64);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 128);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 192);
                sbyte* xs = s.Codes + segment * SegmentColumns;
                Vector512<short> h = ChunkProducts(chunk, xs, lowNibbles) + ChunkProducts(chunk + 64, xs + 8, lowNibbles)
                    + ChunkProducts(chunk + 128, xs + 16, lowNibbles) + ChunkProducts(chunk + 192, xs + 24, lowNibbles);
                Vector512<int> acc = X86.Avx512BW.MultiplyAddAdjacent(h, ones) - TZero.Correction(zeros, g, s.SegmentSums[segment]);
                f = Avx512Int4Kernel.ScaleAdd<TMode>(acc, TScales.Load(scales + (nint)g * Int4RowBlocks.GroupStride * TScales.ElementBytes), s.GroupScales + segment, f);
            }
            if (tailChunks > 0)
            {
                byte* chunk = weights + (nint)segment * SegmentBytes;
                int g = segment >> segmentsPerGroupShift;
                sbyte* xs = s.Codes + segment * SegmentColumns;
                Vector512<short> h = default;
                for (int k = 0; k < tailChunks; k++)
                    h += ChunkProducts(chunk + k * Int4RowBlocks.ChunkStride, xs + k * Int4RowBlocks.ChunkColumns, lowNibbles);
                Vector512<int> acc = X86.Avx512BW.MultiplyAddAdjacent(h, ones) - TZero.Correction(zeros, g, s.SegmentSums[segment]);
                f = Avx512Int4Kernel.ScaleAdd<TMode>(acc, TScales.Load(scales + (nint)g * Int4RowBlocks.GroupStride * TScales.ElementBytes), s.GroupScales + segment, f);
            }
            // An odd last block's pair partner is the zero padding block: only the real rows are stored.
            int row = b * Int4RowBlocks.BlockRows;
            int rows = Math.Min(b + 1 < endBlock ? 2 * Int4RowBlocks.BlockRows : Int4RowBlocks.BlockRows, s.Rows - row);
            Vector512<float> values = f * s.TokenScales[0];
            if (rows == 2 * Int4RowBlocks.BlockRows) values.Store(s.Y + row);
            else for (int i = 0; i < rows; i++) s.Y[row + i] = values.GetElement(i);
        }
    }

    // int16 lanes: Σ nibble · x_q over one chunk of 16 rows × 8 columns, columns 0..3 (low nibbles) plus 4..7 (high), each pair ≤ 3810.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ChunkProducts(byte* chunk, sbyte* x, Vector512<byte> lowNibbles)
    {
        Vector512<byte> pairs = Vector512.Load(chunk);
        Vector512<byte> low = pairs & lowNibbles;
        Vector512<byte> high = X86.Avx512BW.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
        return X86.Avx512BW.MultiplyAddAdjacent(low, Vector512.Create(*(int*)x).AsSByte())
            + X86.Avx512BW.MultiplyAddAdjacent(high, Vector512.Create(*(int*)(x + 4)).AsSByte());
    }

    /// <summary>The scales of one group for the 16 rows of a block pair.</summary>
    internal interface IGroupScales
    {
        /// <summary>Bytes per stored scale.</summary>
        static abstract int ElementBytes { get; }

        /// <summary>The 16 scales of a pair's group at <paramref name="at"/> (lanes 0..7 the lower block, 8..15 the upper), as floats.</summary>
        static abstract Vector512<float> Load(byte* at);
    }

    /// <summary>Scales stored as floats (<see cref="Int4RowBlocks.Scales"/>).</summary>
    internal readonly struct SingleScales : IGroupScales
    {
        public static int ElementBytes => sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* at) => Vector512.Load((float*)at);
    }

    /// <summary>Scales stored as IEEE halves (<see cref="Int4RowBlocks.HalfScales"/>), widened exactly.</summary>
    internal readonly struct HalfScales : IGroupScales
    {
        public static int ElementBytes => sizeof(ushort);

        // float(h) = sign(h) | bits(h & 0x7FFF) << 13 · 2^112: exact for every finite half, subnormals included.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* at)
        {
            Vector512<int> bits = X86.Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)at));
            Vector512<float> magnitude = ((bits & Vector512.Create(0x7FFF)) << 13).AsSingle() * Vector512.Create(TwoToThe112);
            return (magnitude.AsInt32() | (bits & Vector512.Create(0x8000)) << 16).AsSingle();
        }

        private static float TwoToThe112 => BitConverter.Int32BitsToSingle((127 + 112) << 23);
    }

    /// <summary>The zero-point term z[r, g] · Σ_{c∈s} x_q[c] of one segment, 16 rows.</summary>
    private interface IZeroCorrection
    {
        /// <summary>z · <paramref name="activationSum"/> for the 16 rows of group <paramref name="g"/> of the pair whose zero points start at <paramref name="zeros"/>.</summary>
        static abstract Vector512<int> Correction(byte* zeros, int g, int activationSum);
    }

    /// <summary>Symmetric codes: z = 8 for every row, one broadcast.</summary>
    private readonly struct SymmetricZero : IZeroCorrection
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Correction(byte* zeros, int g, int activationSum) =>
            Vector512.Create(PackedInt4Matrix.SymmetricZeroPoint * activationSum);
    }

    /// <summary>Asymmetric codes: a zero point byte per (row, group).</summary>
    private readonly struct GroupZeroPoints : IZeroCorrection
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Correction(byte* zeros, int g, int activationSum) =>
            X86.Avx512F.MultiplyLow(X86.Avx512F.ConvertToVector512Int32(Vector128.Load(zeros + g * Int4RowBlocks.GroupStride)), Vector512.Create(activationSum));
    }
}
