using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Head vectors as IEEE half floats (<see cref="KvCacheType.F16"/>): row = headDim × fp16, little-endian. Queries stay
/// FP32, pre-multiplied by the score scale. The SIMD products widen a row once into FP32 (<see cref="KvVectors"/>) and
/// reuse it for every query of the call.
/// </summary>
[SkipLocalsInit]
internal unsafe struct F16Rows : IKvRows
{
    public static KvCacheType Type => KvCacheType.F16;

    public static int RowBytes(int headDim) => headDim * sizeof(ushort);

    public static int QueryBytes(int headDim) => headDim * sizeof(float);

    public static int AccumulatorLength(int headDim) => headDim;


    // row[d] = fp16(x[d]), rounded to nearest even
    public static void Encode(float* x, byte* row, int headDim) =>
        TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x, headDim), new Span<Half>(row, headDim));

    public static void Decode(byte* row, float* x, int headDim) => KvVectors.HalfToSingle((Half*)row, x, headDim);

    // prepared = scale · q
    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, headDim), scale, new Span<float>(prepared, headDim));

    // s[c] = Σ_d q_c[d] · k[d]
    public static void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim)
    {
        float* k = stackalloc float[headDim];
        KvVectors.HalfToSingle((Half*)key, k, headDim);
        for (int c = 0; c < count; c++) s[c * sStride] = KvVectors.Dot((float*)queries + c * headDim, k, headDim);
    }

    // per row: finite, a whole number of fused steps and up to KvVectors.FusedQueries queries: widened in registers once for
    // all (DotsFiniteHalves); else as Scores
    public static void ScoreRows(byte* keys, int rowBytes, int rows, byte* queries, int count, float* s, int sStride, int headDim)
    {
        bool fused = count <= KvVectors.FusedQueries && KvVectors.HalfStep > 0 && headDim % KvVectors.HalfStep == 0;
        for (int t = 0; t < rows; t++, keys += rowBytes)
        {
            if (fused && KvVectors.AllFiniteHalves((Half*)keys, headDim)) KvVectors.DotsFiniteHalves((float*)queries, count, (Half*)keys, headDim, s + t, sStride);
            else Scores(keys, queries, count, s + t, sStride, headDim);
        }
    }

    public static void ScoresScalar(byte* key, byte* queries, int count, float* s, int sStride, int headDim)
    {
        var k = (Half*)key;
        for (int c = 0; c < count; c++)
        {
            float* q = (float*)queries + c * headDim;
            float sum = 0;
            for (int d = 0; d < headDim; d++) sum = MathF.FusedMultiplyAdd(q[d], (float)k[d], sum);
            s[c * sStride] = sum;
        }
    }

    // acc_c[d] = fma(p_c, v[d], acc_c[d])
    public static void AddValues(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        float* v = stackalloc float[headDim];
        KvVectors.HalfToSingle((Half*)value, v, headDim);
        for (int c = 0; c < count; c++)
            if (p[c * pStride] is float pc and not 0) KvVectors.AddScaled(v, pc, acc + c * headDim, headDim);
    }

    // up to KvVectors.FusedQueries queries, every row finite and a whole number of fused steps: widened in registers over the
    // run once for all (AddScaledFiniteHalves); else row by row, each row widened once into a buffer for every query
    public static void AddValueRows(byte* values, int rowBytes, int rows, float* p, int pStride, int count, float* acc, int headDim)
    {
        bool fused = count <= KvVectors.FusedQueries && KvVectors.HalfStep > 0 && headDim % KvVectors.HalfStep == 0 && rowBytes % sizeof(ushort) == 0;
        for (int t = 0; fused && t < rows; t++) fused = KvVectors.AllFiniteHalves((Half*)(values + t * rowBytes), headDim);
        if (!fused)
        {
            for (int t = 0; t < rows; t++) AddValues(values + t * rowBytes, p + t, pStride, count, acc, headDim);
            return;
        }
        KvVectors.AddScaledFiniteHalves((Half*)values, rowBytes / sizeof(ushort), rows, p, pStride, count, acc, headDim);
    }

    public static void AddValuesScalar(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        var v = (Half*)value;
        for (int c = 0; c < count; c++)
        {
            float pc = p[c * pStride];
            if (pc == 0) continue;
            float* a = acc + c * headDim;
            for (int d = 0; d < headDim; d++) a[d] = MathF.FusedMultiplyAdd(pc, (float)v[d], a[d]);
        }
    }

    public static void Finish(float* acc, float inverse, float* output, int headDim) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc, headDim), inverse, new Span<float>(output, headDim));
}
