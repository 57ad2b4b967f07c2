using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using X86 = System.Runtime.Intrinsics.X86;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics.Trip;

/// <summary>
/// Static per-tensor activation scales of one linear input (TRIP, METHOD.md §4): the scale of the 8-bit codes and
/// the scale of the 4-bit codes that "lower-bit" tokens use, both fixed by calibration.
/// </summary>
/// <param name="EightBit">s₈ = R / 127, R the calibrated max |x| of the tensor.</param>
/// <param name="FourBit">s₄ = R / 7.</param>
public readonly record struct StaticActivationScales(float EightBit, float FourBit)
{
    /// <summary>The scale for <paramref name="bits"/> (8 or 4).</summary>
    public float For(int bits) => bits switch
    {
        8 => EightBit,
        4 => FourBit,
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "Expected 4 or 8 activation bits."),
    };
}

/// <summary>
/// The TRIP pass (METHOD.md §4): one call gathers the surviving rows of X, quantizes each with the tensor's static
/// scale at that token's bit width (8, or 4 for lower-bit tokens), multiplies the codes by integer weights with exact
/// int32 accumulation, and dequantizes:
/// <c>y[i, r] = s_i · Σ_g s_w[r, g] · acc[i, r, g]</c>, <c>acc[i, r, g] = Σ_{c∈g} (w_q[r, c] − z[r, g]) · q[i, c]</c>,
/// <c>q[i, c] = clamp(round(x[i, c] · (1/s_i)), −m_i, m_i)</c>, (s_i, m_i) = (s₄, 7) for lower-bit rows, (s₈, 127) otherwise;
/// the sum over groups runs in group order in float.
/// </summary>
/// <remarks>
/// Weights: <see cref="Int8RowMatrix"/> (one group per row, z = 0) or <see cref="PackedInt4Matrix"/> (groups of G, z per group).
/// The 4-bit matrix is unpacked once into a cached centered int8 copy (<c>w_q − z</c>, −15..15), so the inner loop is an
/// int8 dot product: AVX2 <c>vpsignb</c> + <c>vpmaddubsw</c> + <c>vpmaddwd</c> (pair sums ≤ 2·128·127 never saturate),
/// with a scalar twin that defines the result. Rows that are not gathered are left untouched in y.
/// </remarks>
public static class TripMatMul
{
    private const int Block = 32;       // columns per int8 SIMD block
    private const int TokenTile = 64;   // gathered rows multiplied by one weight row while it is in L1

    private static readonly ConditionalWeakTable<PackedInt4Matrix, sbyte[]> CenteredCodes = new();

    /// <summary>Whether <paramref name="weights"/> has an integer format this pass multiplies by.</summary>
    public static bool Supports(IWeightMatrix weights) => weights is Int8RowMatrix or PackedInt4Matrix;

    /// <summary>The static quantizer: <c>clamp(round(x · inverseScale), −maxCode, maxCode)</c>, ties to even; 0 when inverseScale is 0.</summary>
    public static sbyte QuantizeStatic(float x, float inverseScale, int maxCode) =>
        (sbyte)Math.Clamp((int)MathF.Round(x * inverseScale), -maxCode, maxCode);

    /// <summary>
    /// Computes y[rows[k], ·] for each gathered row k (see the class summary) through <paramref name="threads"/> threads.
    /// </summary>
    /// <param name="weights">W (Rows, Cols): <see cref="Int8RowMatrix"/> or <see cref="PackedInt4Matrix"/>.</param>
    /// <param name="x">X (n, Cols), row-major.</param>
    /// <param name="rows">Rows of X to multiply (each in [0, n)); y's other rows are not written.</param>
    /// <param name="lowBit">Per row of X (n), or empty: true = 4-bit codes with s₄.</param>
    /// <param name="scales">The tensor's static scales.</param>
    /// <param name="y">Y (n, Rows), row-major.</param>
    /// <param name="threads">Threads to split the weight rows over, ≥ 1.</param>
    public static void Multiply(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y, int threads)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        if (!Supports(weights))
            throw new ArgumentException($"TRIP multiplies Int8RowMatrix or PackedInt4Matrix weights, found {weights.GetType().Name}.", nameof(weights));
        int cols = weights.Cols, outF = weights.Rows;
        CheckShapes(weights, x, rows, lowBit, scales, y);
        int count = rows.Length;
        if (count == 0) return;

        int stride = (cols + Block - 1) / Block * Block;
        sbyte[] codes = ArrayPool<sbyte>.Shared.Rent(count * stride);   // (count, stride) gathered, quantized rows
        float[] rowScales = ArrayPool<float>.Shared.Rent(count);       // (count) s_i
        float[] result = ArrayPool<float>.Shared.Rent(count * outF);    // (count, Rows) before the scatter
        try
        {
            GatherAndQuantize(x, cols, stride, rows, lowBit, scales, codes, rowScales);
            var job = new Job(weights, codes, rowScales, result, count, stride);
            int chunks = threads == 1 ? 1 : Math.Min(outF, threads * 4);
            if (chunks == 1) job.Run(0, outF);
            else
                Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, chunk =>
                    job.Run((int)((long)outF * chunk / chunks), (int)((long)outF * (chunk + 1) / chunks)));
            for (int k = 0; k < count; k++) result.AsSpan(k * outF, outF).CopyTo(y.Slice(rows[k] * outF, outF));
        }
        finally
        {
            ArrayPool<sbyte>.Shared.Return(codes);
            ArrayPool<float>.Shared.Return(rowScales);
            ArrayPool<float>.Shared.Return(result);
        }
    }

    /// <summary>
    /// As <see cref="Multiply(IWeightMatrix, ReadOnlySpan{float}, ReadOnlySpan{int}, ReadOnlySpan{bool}, StaticActivationScales, Span{float}, int)"/>,
    /// through <paramref name="kernel"/>'s 8-bit-activation integer kernel for the weight format when it has one: the
    /// gathered rows are quantized with the static scales straight into that kernel's activation layout and multiplied
    /// by its packed weights (no int8 copy of 4-bit weights), with its threads. Same integer sums; the float epilogue
    /// is the kernel's (GroupEpilogue order), so results may differ from the other overload in the last bits.
    /// Without such a kernel, runs the other overload with <paramref name="threads"/>.
    /// </summary>
    /// <param name="kernel">The model's kernel (a <see cref="KernelSet"/> or one integer kernel).</param>
    /// <param name="weights">W (Rows, Cols): <see cref="Int8RowMatrix"/> or <see cref="PackedInt4Matrix"/>.</param>
    /// <param name="x">X (n, Cols), row-major.</param>
    /// <param name="rows">Rows of X to multiply (each in [0, n)); y's other rows are not written.</param>
    /// <param name="lowBit">Per row of X (n), or empty: true = 4-bit codes with s₄.</param>
    /// <param name="scales">The tensor's static scales.</param>
    /// <param name="y">Y (n, Rows), row-major.</param>
    /// <param name="threads">Threads for the fallback pass, ≥ 1.</param>
    public static void Multiply(IMatMulKernel kernel, IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y, int threads)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(weights);
        IMatMulKernel? formatKernel = kernel is KernelSet set ? (set.Supports(weights) ? set.KernelFor(weights) : null) : kernel;
        if (formatKernel is not IStaticScaleMatMulKernel { ActivationBits: 8 } integer || !formatKernel.Supports(weights) || !Supports(weights))
        {
            Multiply(weights, x, rows, lowBit, scales, y, threads);
            return;
        }
        int outF = weights.Rows;
        int n = CheckShapes(weights, x, rows, lowBit, scales, y);
        int count = rows.Length;
        if (count == 0) return;
        bool identity = count == n;
        for (int k = 0; identity && k < count; k++) identity = rows[k] == k;
        if (identity)
        {
            integer.MatMulStatic(weights, x, rows, lowBit, scales, y[..(n * outF)]);
            return;
        }
        float[] result = ArrayPool<float>.Shared.Rent(count * outF); // (count, Rows) before the scatter
        try
        {
            integer.MatMulStatic(weights, x, rows, lowBit, scales, result.AsSpan(0, count * outF));
            for (int k = 0; k < count; k++) result.AsSpan(k * outF, outF).CopyTo(y.Slice(rows[k] * outF, outF));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(result);
        }
    }

    // checks the shapes both overloads take; returns n, the rows of x
    private static int CheckShapes(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y)
    {
        int cols = weights.Cols, outF = weights.Rows;
        if (x.Length % cols != 0) throw new ArgumentException($"x holds {x.Length} values, not whole rows of {cols}.", nameof(x));
        int n = x.Length / cols;
        if (y.Length < (long)n * outF) throw new ArgumentException($"Expected y of at least {n}x{outF} elements, found {y.Length}.", nameof(y));
        if (!lowBit.IsEmpty && lowBit.Length != n) throw new ArgumentException($"Expected {n} lower-bit flags, found {lowBit.Length}.", nameof(lowBit));
        foreach (int row in rows)
            if ((uint)row >= (uint)n) throw new ArgumentOutOfRangeException(nameof(rows), row, $"Expected rows in [0, {n}).");
        if (!(scales.EightBit >= 0 && scales.FourBit >= 0)) throw new ArgumentOutOfRangeException(nameof(scales), scales, "Expected non-negative scales.");
        return n;
    }

    // q[k, c] = clamp(round(x[rows[k], c] / s_k)), zero padded to stride
    private static void GatherAndQuantize(ReadOnlySpan<float> x, int cols, int stride, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, sbyte[] codes, float[] rowScales)
    {
        for (int k = 0; k < rows.Length; k++)
        {
            bool low = !lowBit.IsEmpty && lowBit[rows[k]];
            float scale = low ? scales.FourBit : scales.EightBit;
            int maxCode = low ? 7 : 127;
            float inverse = scale > 0 ? 1f / scale : 0f;
            rowScales[k] = scale;
            ReadOnlySpan<float> source = x.Slice(rows[k] * cols, cols);
            Span<sbyte> target = codes.AsSpan(k * stride, stride);
            for (int c = 0; c < cols; c++) target[c] = QuantizeStatic(source[c], inverse, maxCode);
            target[cols..].Clear();
        }
    }

    /// <summary>The weight codes as centered int8 (Rows, stride) and the group size: w_q − z.</summary>
    private static (sbyte[] Codes, int Stride, int GroupSize, int GroupCount, float[] Scales) Layout(IWeightMatrix weights) => weights switch
    {
        Int8RowMatrix m => (m.CodeArray, m.RowStride, m.RowStride, 1, m.ScaleArray),
        PackedInt4Matrix m => (CenteredCodes.GetValue(m, Center), m.RowBytes * 2, m.GroupSize, m.GroupCount, m.ScaleArray),
        _ => throw new ArgumentException($"Unsupported weight format {weights.GetType().Name}.", nameof(weights)),
    };

    // centered[r, c] = nibble[r, c] − z[r, c / G]; 0 past Cols
    private static sbyte[] Center(PackedInt4Matrix m)
    {
        int stride = m.RowBytes * 2;
        sbyte[] centered = new sbyte[(long)m.Rows * stride];
        byte[] packed = m.PackedArray;
        for (int r = 0; r < m.Rows; r++)
            for (int c = 0; c < m.Cols; c++)
            {
                byte pair = packed[(long)r * m.RowBytes + c / 2];
                int nibble = (c & 1) == 0 ? pair & 0xF : pair >> 4;
                centered[(long)r * stride + c] = (sbyte)(nibble - m.ZeroPoint(r, c / m.GroupSize));
            }
        return centered;
    }

    private sealed class Job(IWeightMatrix weights, sbyte[] codes, float[] rowScales, float[] result, int count, int stride)
    {
        private readonly (sbyte[] Codes, int Stride, int GroupSize, int GroupCount, float[] Scales) _w = Layout(weights);
        private readonly int _outF = weights.Rows;

        public void Run(int rowBegin, int rowEnd)
        {
            var (wCodes, wStride, groupSize, groupCount, wScales) = _w;
            for (int tile = 0; tile < count; tile += TokenTile)
            {
                int tileEnd = Math.Min(count, tile + TokenTile);
                for (int r = rowBegin; r < rowEnd; r++)
                {
                    ReadOnlySpan<sbyte> wRow = wCodes.AsSpan(r * wStride, stride);
                    ReadOnlySpan<float> sw = wScales.AsSpan(r * groupCount, groupCount);
                    int k = tile;
                    if (X86.Avx2.IsSupported)
                        for (; k + 8 <= tileEnd; k += 8) Tokens8(wRow, sw, groupSize, groupCount, k, r);
                    for (; k < tileEnd; k++)
                    {
                        ReadOnlySpan<sbyte> xRow = codes.AsSpan(k * stride, stride);
                        float sum = 0f;
                        for (int g = 0; g < groupCount; g++)
                        {
                            int begin = g * groupSize, length = Math.Min(groupSize, stride - begin);
                            sum += sw[g] * Dot(wRow.Slice(begin, length), xRow.Slice(begin, length));
                        }
                        result[k * _outF + r] = rowScales[k] * sum;
                    }
                }
            }
        }

        // y[k..k+7, r]: the same per-group int32 sums and float epilogue (multiply, then add, in group order) as the
        // one-token loop, each weight block loaded once for eight tokens and the eight group sums reduced together
        private void Tokens8(ReadOnlySpan<sbyte> wRow, ReadOnlySpan<float> sw, int groupSize, int groupCount, int k, int r)
        {
            ref sbyte wp = ref MemoryMarshal.GetReference(wRow);
            ref sbyte x = ref codes[k * stride];
            nuint s = (nuint)stride;
            Vector256<short> ones = Vector256.Create((short)1);
            Vector256<float> sums = Vector256<float>.Zero; // (8 tokens)
            for (int g = 0; g < groupCount; g++)
            {
                int begin = g * groupSize, end = Math.Min(begin + groupSize, stride);
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
                sums = X86.Avx.Add(sums, X86.Avx.Multiply(Vector256.Create(sw[g]), X86.Avx.ConvertToVector256Single(groupSums)));
            }
            Vector256<float> y = X86.Avx.Multiply(Vector256.LoadUnsafe(ref rowScales[k]), sums);
            for (int j = 0; j < 8; j++) result[(k + j) * _outF + r] = y.GetElement(j);
        }

        private static Vector256<int> MultiplyAccumulate(Vector256<int> acc, Vector256<byte> magnitude, Vector256<sbyte> w, Vector256<sbyte> x, Vector256<short> ones) =>
            X86.Avx2.Add(acc, X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(x, w)), ones));
    }

    /// <summary><c>Σ_c w[c] · x[c]</c> in exact int32; the length is a multiple of 32, |x| ≤ 127.</summary>
    internal static int Dot(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> x)
    {
        if (!X86.Avx2.IsSupported) return DotScalar(w, x);
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

    /// <summary>The scalar twin of <see cref="Dot"/>.</summary>
    internal static int DotScalar(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> x)
    {
        int sum = 0;
        for (int c = 0; c < w.Length; c++) sum += w[c] * x[c];
        return sum;
    }
}
