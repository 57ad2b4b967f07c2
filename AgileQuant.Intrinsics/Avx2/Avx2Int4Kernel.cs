using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>: per 64-column block, the 32
/// packed bytes are split into low / high nibbles (even / odd columns, 0..15 unsigned) and multiplied with
/// the activations (stored even-then-odd) by two <c>vpmaddubsw</c> (u8 × s8 pair sums ≤ 2·15·127, no int16
/// saturation, their sum ≤ 7620) and one <c>vpmaddwd</c> by 1 into int32 lanes; per group the exact int32 lanes of
/// <c>Σ nibble · x_q</c> are converted and multiplied by the group scale into float lanes (no horizontal
/// sum per group) and <c>Σ_g s_w · z · Σ x_q</c> is subtracted once per row, so outputs equal the scalar
/// twin's up to float rounding.
/// </summary>
public sealed unsafe class Avx2Int4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Tokens that share one unpack of a weight block.</summary>
    private const int TokenTile = 4;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Int4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2") { }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-avx2";

    private protected override int GroupSize(PackedInt4Matrix weights) => weights.GroupSize;

    private protected override ActivationOrder Order => ActivationOrder.NibblePairs;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, float* y, int rowBegin, int rowEnd)
    {
        int groups = w.GroupCount;
        fixed (byte* packed = w.PackedArray)
        fixed (byte* zeroPoints = w.ZeroPointArray)
        fixed (float* scales = w.ScaleArray)
        fixed (sbyte* codes = xq.Codes)
        fixed (float* groupSums = xq.GroupSumsAsFloat)
        {
            var rows = new Int4Rows(packed, w.RowBytes, w.GroupSize, groups, scales, zeroPoints);
            float* dots = stackalloc float[TokenTile];
            for (int r = rowBegin; r < rowEnd; r++)
                for (int t0 = 0; t0 < xq.Tokens; t0 += TokenTile)
                {
                    int n = Math.Min(TokenTile, xq.Tokens - t0);
                    sbyte* x = codes + (nint)t0 * xq.Stride;
                    switch (n)
                    {
                        case 4: ScaledRowDots<FourTokens>(rows, r, x, xq.Stride, dots); break;
                        case 3: ScaledRowDots<ThreeTokens>(rows, r, x, xq.Stride, dots); break;
                        case 2: ScaledRowDots<TwoTokens>(rows, r, x, xq.Stride, dots); break;
                        default: ScaledRowDots<OneToken>(rows, r, x, xq.Stride, dots); break;
                    }
                    for (int j = 0; j < n; j++)
                    {
                        float correction = ZeroPointCorrection(rows, r, groupSums + (t0 + j) * groups);
                        y[(nint)(t0 + j) * w.Rows + r] = xq.Scales[t0 + j] * (dots[j] - correction);
                    }
                }
        }
    }

    // dots[j] = Σ_g s_w[r, g] · Σ_{c∈g} nibble[r, c] · x_q[j, c]: exact int32 lanes per group, scaled into float
    // lanes (no horizontal sum per group), so outputs equal the scalar twin's up to float rounding. One 64-column
    // block gives 8 int32 lanes, lanes 0..3 from columns 0..31 and 4..7 from 32..63: with groups of 32 the two
    // halves take their own scale.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaledRowDots<N>(in Int4Rows w, int r, sbyte* x, nint xStride, float* dots) where N : struct, ITokenCount
    {
        byte* pairs = w.Packed + (nint)r * w.RowBytes;
        byte* rowEnd = pairs + w.RowBytes;
        bool halfBlockGroups = w.GroupSize == 32;
        nint groupBytes = Math.Max(1, w.GroupSize / 64) * 32;
        float* scales = w.Scales + (nint)r * w.Groups;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int g = 0; pairs < rowEnd;)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (byte* groupEnd = pairs + Math.Min(groupBytes, rowEnd - pairs); pairs < groupEnd; pairs += 32, x += 64)
            {
                (Vector256<byte> even, Vector256<byte> odd) = Unpack(pairs);
                a0 += BlockProducts(even, odd, x);
                if (N.Value > 1) a1 += BlockProducts(even, odd, x + xStride);
                if (N.Value > 2) a2 += BlockProducts(even, odd, x + 2 * xStride);
                if (N.Value > 3) a3 += BlockProducts(even, odd, x + 3 * xStride);
            }
            Vector256<float> scale;
            if (halfBlockGroups)
            {
                // A last half block past Cols holds zero activations; scale 0 keeps it out.
                scale = Vector256.Create(Vector128.Create(scales[g]), Vector128.Create(g + 1 < w.Groups ? scales[g + 1] : 0f));
                g += 2;
            }
            else
            {
                scale = Vector256.Create(scales[g]);
                g++;
            }
            if (N.Value == 1)
            {
                // One token: alternate two float accumulators so successive groups' FMAs do not wait on each other.
                Vector256<float> next = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a0), scale, f1);
                f1 = f0;
                f0 = next;
                continue;
            }
            f0 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a0), scale, f0);
            if (N.Value > 1) f1 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a1), scale, f1);
            if (N.Value > 2) f2 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a2), scale, f2);
            if (N.Value > 3) f3 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a3), scale, f3);
        }
        if (N.Value == 1) f0 += f1;
        dots[0] = Vector256.Sum(f0);
        if (N.Value > 1) dots[1] = Vector256.Sum(f1);
        if (N.Value > 2) dots[2] = Vector256.Sum(f2);
        if (N.Value > 3) dots[3] = Vector256.Sum(f3);
    }

    // Σ_g s_w[r, g] · z[r, g] · Σ_{c∈g} x_q[c], eight groups per step.
    private static float ZeroPointCorrection(in Int4Rows w, int r, float* groupSums)
    {
        float* scales = w.Scales + (nint)r * w.Groups;
        byte* zeros = w.ZeroPoints is null ? null : w.ZeroPoints + (nint)r * w.Groups;
        Vector256<float> sum = default;
        int g = 0;
        for (; g + 8 <= w.Groups; g += 8)
        {
            Vector256<float> weighted = X86.Avx.LoadVector256(scales + g) * X86.Avx.LoadVector256(groupSums + g);
            Vector256<float> zero = zeros is null
                ? Vector256.Create((float)PackedInt4Matrix.SymmetricZeroPoint)
                : X86.Avx.ConvertToVector256Single(X86.Avx2.ConvertToVector256Int32(zeros + g));
            sum = X86.Fma.MultiplyAdd(weighted, zero, sum);
        }
        float tail = 0f;
        for (; g < w.Groups; g++) tail += scales[g] * groupSums[g] * (zeros is null ? PackedInt4Matrix.SymmetricZeroPoint : zeros[g]);
        return Vector256.Sum(sum) + tail;
    }

    /// <summary>acc[g] = Σ_{c∈g} nibble[c] · x_q[c] for one row and token (x in nibble-pair order), from the kernel's block steps.</summary>
    internal static void RawGroupSums(byte* row, int rowBytes, int groupSize, sbyte* x, int* acc, int groups)
    {
        new Span<int>(acc, groups).Clear();
        for (int b = 0; b < rowBytes / 32; b++)
        {
            (Vector256<byte> even, Vector256<byte> odd) = Unpack(row + b * 32);
            Vector256<int> lanes = BlockProducts(even, odd, x + b * 64);
            if (groupSize > 32)
            {
                acc[b * 64 / groupSize] += Vector256.Sum(lanes);
                continue;
            }
            acc[2 * b] = Vector128.Sum(lanes.GetLower());
            if (2 * b + 1 < groups) acc[2 * b + 1] = Vector128.Sum(lanes.GetUpper());
        }
    }

    // 32 packed bytes (64 columns) → low nibbles (even columns) and high nibbles (odd columns), unsigned 0..15.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Even, Vector256<byte> Odd) Unpack(byte* pairs)
    {
        Vector256<byte> lowNibbles = Vector256.Create((byte)0x0F);
        Vector256<byte> packed = X86.Avx.LoadVector256(pairs);
        return (packed & lowNibbles, X86.Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & lowNibbles);
    }

    // 8 int32 lanes of Σ nibble · x over one 64-column block: two vpmaddubsw (pairs ≤ 2·15·127 each, their
    // int16 sum ≤ 7620) added, then one vpmaddwd by 1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockProducts(Vector256<byte> even, Vector256<byte> odd, sbyte* x) =>
        X86.Avx2.MultiplyAddAdjacent(
            X86.Avx2.MultiplyAddAdjacent(even, X86.Avx.LoadVector256(x)) + X86.Avx2.MultiplyAddAdjacent(odd, X86.Avx.LoadVector256(x + 32)),
            Vector256.Create((short)1));

    private readonly struct Int4Rows(byte* packed, int rowBytes, int groupSize, int groups, float* scales, byte* zeroPoints)
    {
        public readonly byte* Packed = packed;
        public readonly int RowBytes = rowBytes;
        public readonly int GroupSize = groupSize;
        public readonly int Groups = groups;
        public readonly float* Scales = scales;
        public readonly byte* ZeroPoints = zeroPoints;
    }

}
