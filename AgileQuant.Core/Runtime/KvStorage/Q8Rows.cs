using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Head vectors as int8 codes with one fp16 scale per block of <see cref="KvBlocks.Size"/> values (<see cref="KvCacheType.Q8"/>,
/// llama.cpp's q8_0 rounding): row = headDim × int8 codes, then one fp16 scale per block. A block stands for
/// d · c[i] with d = max|x| / 127 rounded up to fp16 (so no code clips) and c[i] = round(x[i] / d) ∈ [−127, 127].
/// </summary>
/// <remarks>
/// Scores run on integers: each query is rounded the same way per block (scale in FP32), and a block contributes
/// d_q · d_k · Σ c_q · c_k (<see cref="BlockDot"/>), as llama.cpp's q8_0 × q8_0 dot product. Values widen to FP32.
/// </remarks>
[SkipLocalsInit]
internal unsafe struct Q8Rows : IKvRows
{
    public static KvCacheType Type => KvCacheType.Q8;

    public static int RowBytes(int headDim) => headDim + headDim / KvBlocks.Size(headDim) * sizeof(ushort);

    // codes, padded to whole floats, then one FP32 scale per block
    public static int QueryBytes(int headDim) => KvBlocks.QueryScalesOffset(headDim) + headDim / KvBlocks.Size(headDim) * sizeof(float);

    public static int AccumulatorLength(int headDim) => headDim;

    // per block: d = fp16↑(max|x| / 127), c[i] = round(x[i] / d); a block that is not finite stores d = NaN
    public static void Encode(float* x, byte* row, int headDim)
    {
        int block = KvBlocks.Size(headDim);
        var codes = (sbyte*)row;
        var scales = (Half*)(row + headDim);
        for (int b = 0; b < headDim / block; b++)
        {
            var values = new ReadOnlySpan<float>(x + b * block, block);
            float max = MathF.Abs(TensorPrimitives.MaxMagnitude(values));
            Half d = float.IsFinite(max) ? KvBlocks.RoundUpToHalf(max / 127f) : Half.NaN;
            scales[b] = d;
            float step = (float)d;
            for (int i = 0; i < block; i++)
                codes[b * block + i] = step > 0 && float.IsFinite(step) ? (sbyte)Math.Clamp(MathF.Round(values[i] / step), -127f, 127f) : (sbyte)0;
        }
    }

    public static void Decode(byte* row, float* x, int headDim)
    {
        int block = KvBlocks.Size(headDim);
        var scales = (Half*)(row + headDim);
        for (int i = 0; i < headDim; i++) x[i] = (float)scales[i / block] * ((sbyte*)row)[i];
    }

    // per block: d_q = max|q| / 127 · scale, c_q[i] = round(q[i] · 127 / max|q|)
    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim) =>
        RoundQuery(q, scale, prepared, headDim, KvBlocks.Size(headDim));

    /// <summary>Rounds a query per block to int8 codes (first) and FP32 scales (at <see cref="KvBlocks.QueryScalesOffset"/>).</summary>
    internal static void RoundQuery(float* q, float scale, byte* prepared, int headDim, int block)
    {
        var codes = (sbyte*)prepared;
        var scales = (float*)(prepared + KvBlocks.QueryScalesOffset(headDim));
        for (int b = 0; b < headDim / block; b++)
        {
            var values = new ReadOnlySpan<float>(q + b * block, block);
            float max = MathF.Abs(TensorPrimitives.MaxMagnitude(values));
            bool usable = max > 0 && float.IsFinite(max);
            scales[b] = usable ? max / 127f * scale : float.IsFinite(max) ? 0f : float.NaN;
            float inverse = usable ? 127f / max : 0f;
            for (int i = 0; i < block; i++) codes[b * block + i] = (sbyte)Math.Clamp(MathF.Round(values[i] * inverse), -127f, 127f);
        }
    }

    public static void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim) =>
        Scores(key, queries, count, s, sStride, headDim, simd: true);

    public static void ScoresScalar(byte* key, byte* queries, int count, float* s, int sStride, int headDim) =>
        Scores(key, queries, count, s, sStride, headDim, simd: false);

    // s[c] = Σ_b fl(d_q[b] · d_k[b]) · Σ_i c_q[i] · c_k[i], blocks in order (the integer sums are exact either way)
    private static void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim, bool simd)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, queryBytes = QueryBytes(headDim), offset = KvBlocks.QueryScalesOffset(headDim);
        var keyCodes = (sbyte*)key;
        float* keyScales = stackalloc float[blocks];
        for (int b = 0; b < blocks; b++) keyScales[b] = (float)((Half*)(key + headDim))[b];
        for (int c = 0; c < count; c++)
        {
            byte* q = queries + c * queryBytes;
            var queryScales = (float*)(q + offset);
            float sum = 0;
            for (int b = 0; b < blocks; b++)
                sum = MathF.FusedMultiplyAdd(BlockDot.Signed((sbyte*)q + b * block, keyCodes + b * block, block, simd), queryScales[b] * keyScales[b], sum);
            s[c * sStride] = sum;
        }
    }

    // acc_c[i] = fma(p_c · d[b], c[i], acc_c[i]), i in block b: the row widened once, then per query
    public static void AddValues(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        int block = KvBlocks.Size(headDim);
        var scales = (Half*)(value + headDim);
        float* codes = stackalloc float[headDim];
        KvVectors.Int8ToSingle((sbyte*)value, codes, headDim);
        for (int b = 0; b < headDim / block; b++)
        {
            float d = (float)scales[b];
            for (int c = 0; c < count; c++)
                if (p[c * pStride] is float pc && pc != 0) KvVectors.AddScaled(codes + b * block, pc * d, acc + c * headDim + b * block, block);
        }
    }

    public static void ScoreRows(byte* keys, int rowBytes, int rows, byte* queries, int count, float* s, int sStride, int headDim)
    {
        for (int t = 0; t < rows; t++) Scores(keys + t * rowBytes, queries, count, s + t, sStride, headDim);
    }

    public static void AddValueRows(byte* values, int rowBytes, int rows, float* p, int pStride, int count, float* acc, int headDim)
    {
        for (int t = 0; t < rows; t++) AddValues(values + t * rowBytes, p + t, pStride, count, acc, headDim);
    }

    public static void AddValuesScalar(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        int block = KvBlocks.Size(headDim);
        var codes = (sbyte*)value;
        var scales = (Half*)(value + headDim);
        for (int b = 0; b < headDim / block; b++)
        {
            float d = (float)scales[b];
            for (int c = 0; c < count; c++)
            {
                float pc = p[c * pStride];
                if (pc == 0) continue;
                float w = pc * d;
                float* a = acc + c * headDim + b * block;
                for (int i = 0; i < block; i++) a[i] = MathF.FusedMultiplyAdd(w, codes[b * block + i], a[i]);
            }
        }
    }

    public static void Finish(float* acc, float inverse, float* output, int headDim) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc, headDim), inverse, new Span<float>(output, headDim));
}
