using System.Buffers;
using System.Runtime.CompilerServices;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Intrinsics.Trip;

/// <summary>
/// The TRIP pass (<see cref="ITripKernel"/>) as a reference any kernel can fall back to: one call gathers the surviving
/// rows of X, quantizes each with the tensor's static scale at that token's bit width (8, or 4 for lower-bit tokens),
/// multiplies the codes by integer weights with exact int32 accumulation, and dequantizes:
/// <c>y[i, r] = s_i · Σ_g s_w[r, g] · acc[i, r, g]</c>, <c>acc[i, r, g] = Σ_{c∈g} (w_q[r, c] − z[r, g]) · q[i, c]</c>,
/// <c>q[i, c] = clamp(round(x[i, c] · (1/s_i)), −m_i, m_i)</c>, (s_i, m_i) = (s₄, 7) for lower-bit rows, (s₈, 127) otherwise;
/// the sum over groups runs in group order in float.
/// </summary>
/// <remarks>
/// Weights: <see cref="Int8RowMatrix"/> (one group per row, z = 0) or <see cref="PackedInt4Matrix"/> (groups of G, z per group).
/// The 4-bit matrix is unpacked once into a cached centered int8 copy (<c>w_q − z</c>, −15..15), so the inner loop is an
/// int8 dot product per weight row and token tile (<see cref="ITripTile"/>: <see cref="ScalarTripTile"/>, the
/// specification, and <see cref="Avx2TripTile"/>, equal to it bit for bit). Rows that are not gathered are left untouched in y.
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
            var operands = new TripCodes(codes, stride, rowScales, result, outF, count);
            if (Avx2TripTile.IsSupported) Run<Avx2TripTile>(weights, operands, threads);
            else Run<ScalarTripTile>(weights, operands, threads);
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
    /// through <paramref name="kernel"/>'s own TRIP route where it offers one (<see cref="ITripKernel"/>, e.g. a
    /// <see cref="KernelSet"/>): the gathered rows are quantized with the static scales straight into its 8-bit-activation
    /// integer kernel's layout and multiplied by its packed weights, with its threads. Same integer sums; the float
    /// epilogue is the kernel's (GroupEpilogue order), so results may differ from the reference pass in the last bits.
    /// Other kernels run the reference pass with <paramref name="threads"/>.
    /// </summary>
    /// <param name="kernel">The model's kernel.</param>
    /// <param name="weights">W (Rows, Cols): <see cref="Int8RowMatrix"/> or <see cref="PackedInt4Matrix"/>.</param>
    /// <param name="x">X (n, Cols), row-major.</param>
    /// <param name="rows">Rows of X to multiply (each in [0, n)); y's other rows are not written.</param>
    /// <param name="lowBit">Per row of X (n), or empty: true = 4-bit codes with s₄.</param>
    /// <param name="scales">The tensor's static scales.</param>
    /// <param name="y">Y (n, Rows), row-major.</param>
    /// <param name="threads">Threads for the reference pass, ≥ 1.</param>
    public static void Multiply(IMatMulKernel kernel, IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y, int threads)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(weights);
        if (kernel is ITripKernel trip && trip.SupportsTrip(weights)) trip.MatMulTrip(weights, x, rows, lowBit, scales, y);
        else Multiply(weights, x, rows, lowBit, scales, y, threads);
    }

    /// <summary>
    /// The TRIP pass through <paramref name="formatKernel"/>'s static-scale route when it has one for the weights (an
    /// integer kernel with 8-bit activations: its inner loops take the 4-bit codes too), else the reference pass with
    /// <paramref name="threads"/>.
    /// </summary>
    internal static void Route(IMatMulKernel? formatKernel, IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows,
        ReadOnlySpan<bool> lowBit, StaticActivationScales scales, Span<float> y, int threads)
    {
        if (formatKernel is IStaticScaleMatMulKernel { ActivationBits: 8 } route && formatKernel.Supports(weights) && Supports(weights))
            MultiplyThrough(route, weights, x, rows, lowBit, scales, y);
        else Multiply(weights, x, rows, lowBit, scales, y, threads);
    }

    // y[rows[k], ·] from the route's compact product, written in place when the rows are all of x in order, else scattered
    private static void MultiplyThrough(IStaticScaleMatMulKernel route, IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows,
        ReadOnlySpan<bool> lowBit, StaticActivationScales scales, Span<float> y)
    {
        int outF = weights.Rows;
        int n = CheckShapes(weights, x, rows, lowBit, scales, y);
        int count = rows.Length;
        if (count == 0) return;
        bool identity = count == n;
        for (int k = 0; identity && k < count; k++) identity = rows[k] == k;
        if (identity)
        {
            route.MatMulStatic(weights, x, rows, lowBit, scales, y[..(n * outF)]);
            return;
        }
        float[] result = ArrayPool<float>.Shared.Rent(count * outF); // (count, Rows) before the scatter
        try
        {
            route.MatMulStatic(weights, x, rows, lowBit, scales, result.AsSpan(0, count * outF));
            for (int k = 0; k < count; k++) result.AsSpan(k * outF, outF).CopyTo(y.Slice(rows[k] * outF, outF));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(result);
        }
    }

    // checks the shapes every TRIP entry point takes; returns n, the rows of x
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

    // result (count, Rows) through TTile, the weight rows split over `threads`
    private static void Run<TTile>(IWeightMatrix weights, TripCodes operands, int threads) where TTile : ITripTile
    {
        var job = new Job<TTile>(weights, operands);
        int outF = weights.Rows;
        int chunks = threads == 1 ? 1 : Math.Min(outF, threads * 4);
        if (chunks == 1) job.Run(0, outF);
        else
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, chunk =>
                job.Run((int)((long)outF * chunk / chunks), (int)((long)outF * (chunk + 1) / chunks)));
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

    private sealed class Job<TTile>(IWeightMatrix weights, TripCodes operands) where TTile : ITripTile
    {
        private readonly (sbyte[] Codes, int Stride, int GroupSize, int GroupCount, float[] Scales) _w = Layout(weights);

        public void Run(int rowBegin, int rowEnd)
        {
            var (wCodes, wStride, groupSize, groupCount, wScales) = _w;
            for (int tile = 0; tile < operands.Count; tile += TokenTile)
            {
                int tileEnd = Math.Min(operands.Count, tile + TokenTile);
                for (int r = rowBegin; r < rowEnd; r++)
                {
                    var row = new TripWeightRow(wCodes.AsSpan(r * wStride, operands.Stride), wScales.AsSpan(r * groupCount, groupCount), groupSize, r);
                    TTile.Multiply(row, operands, tile, tileEnd);
                }
            }
        }
    }

    /// <summary>
    /// result[k, r] = s_k · Σ_g s_w[r, g] · Σ_{c∈g} w[r, c] · q[k, c] for one token k, the group sums by
    /// <typeparamref name="TTile"/>'s exact dot product, multiplied and added in group order (two roundings each).
    /// </summary>
    internal static void OneToken<TTile>(in TripWeightRow w, in TripCodes x, int k) where TTile : ITripTile
    {
        ReadOnlySpan<sbyte> xRow = x.Codes.AsSpan(k * x.Stride, x.Stride);
        float sum = 0f;
        for (int g = 0; g < w.Scales.Length; g++)
        {
            int begin = g * w.GroupSize, length = Math.Min(w.GroupSize, x.Stride - begin);
            sum += w.Scales[g] * TTile.Dot(w.Codes.Slice(begin, length), xRow.Slice(begin, length));
        }
        x.Result[k * x.OutFeatures + w.Row] = x.RowScales[k] * sum;
    }
}

/// <summary>The gathered, quantized rows of one TRIP call and where their products go.</summary>
/// <param name="Codes">q (Count, Stride), zero padded past Cols.</param>
/// <param name="Stride">Codes per row: Cols rounded up to 32.</param>
/// <param name="RowScales">s_k (Count).</param>
/// <param name="Result">y (Count, OutFeatures), before the scatter.</param>
/// <param name="OutFeatures">Rows of W.</param>
/// <param name="Count">Gathered rows.</param>
internal readonly record struct TripCodes(sbyte[] Codes, int Stride, float[] RowScales, float[] Result, int OutFeatures, int Count);

/// <summary>One weight row of a TRIP call: centered int8 codes (Stride) and its group scales (GroupCount).</summary>
internal readonly ref struct TripWeightRow(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, int groupSize, int row)
{
    /// <summary>w_q − z (Stride), zero past Cols.</summary>
    public readonly ReadOnlySpan<sbyte> Codes = codes;

    /// <summary>s_w (GroupCount).</summary>
    public readonly ReadOnlySpan<float> Scales = scales;

    /// <summary>Columns per group.</summary>
    public readonly int GroupSize = groupSize;

    /// <summary>Row r of W: the output column it fills.</summary>
    public readonly int Row = row;
}

/// <summary>
/// The inner loop of the TRIP reference pass for one instruction set: one weight row against a tile of tokens, the int32
/// group sums exact and the float epilogue in the order of <see cref="TripMatMul.OneToken{TTile}"/> (bit for bit).
/// </summary>
internal interface ITripTile
{
    /// <summary><c>Σ_c w[c] · x[c]</c> in exact int32; the length is a multiple of 32, |x| ≤ 127.</summary>
    static abstract int Dot(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> x);

    /// <summary>result[k, w.Row] for tokens k in [begin, end).</summary>
    static abstract void Multiply(in TripWeightRow w, in TripCodes x, int begin, int end);
}
