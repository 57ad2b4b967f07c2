using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Head vectors as 4-bit codes after a rotation (<see cref="KvCacheType.Q4"/>): each block of <see cref="KvBlocks.Size"/>
/// values is rotated by the normalized Walsh–Hadamard transform (<see cref="BlockHadamard"/>), then stored as
/// y ≈ m + d · c, c ∈ [0, 15], with m = min y rounded down and d = (max y − m) / 15 rounded up to fp16 (no code clips).
/// Row = headDim / 2 bytes of codes (byte j of a block holds c[j] in its low and c[j + B/2] in its high nibble), then the
/// blocks' fp16 scales, then their fp16 minimums.
/// </summary>
/// <remarks>
/// Queries are rotated by the same transform, so q·k = (Hq)·(Hk), and rounded per block to int8 as for <see cref="Q8Rows"/>;
/// a block contributes d_q·d·Σ c_q·c + d_q·m·Σ c_q (<see cref="BlockDot.Nibbles"/>). Values accumulate in the rotated basis,
/// each block's Σ p·m apart (after the head's values in the accumulator), and are rotated back once in <see cref="Finish"/>.
/// Rotated per-token 4-bit keys and values against plain ones (<see cref="NoRotation"/>): docs/accuracy.md, "KV cache".
/// </remarks>
[SkipLocalsInit]
internal unsafe struct Q4Rows<TRotation> : IKvRows where TRotation : IBlockRotation
{
    public static KvCacheType Type => KvCacheType.Q4;

    public static int RowBytes(int headDim) => headDim / 2 + 2 * (headDim / KvBlocks.Size(headDim)) * sizeof(ushort);

    // int8 codes padded to whole floats, the blocks' FP32 scales, then each block's Σ c_q (int32)
    public static int QueryBytes(int headDim) => KvBlocks.QueryScalesOffset(headDim) + 2 * (headDim / KvBlocks.Size(headDim)) * sizeof(float);

    public static int AccumulatorLength(int headDim) => headDim + headDim / KvBlocks.Size(headDim);

    // per block: y = H x; m = fp16↓(min y), d = fp16↑((max y − m) / 15), c[i] = round((y[i] − m) / d); not finite: NaN
    public static void Encode(float* x, byte* row, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, half = block / 2;
        var scales = (Half*)(row + headDim / 2);
        Half* minimums = scales + blocks;
        Span<float> y = stackalloc float[block];
        for (int b = 0; b < blocks; b++)
        {
            new ReadOnlySpan<float>(x + b * block, block).CopyTo(y);
            TRotation.Apply(y, block);
            float min = TensorPrimitives.Min(y), max = TensorPrimitives.Max(y);
            bool finite = float.IsFinite(min) && float.IsFinite(max);
            Half m = finite ? KvBlocks.RoundDownToHalf(min) : Half.NaN;
            float mf = (float)m;
            Half d = finite ? KvBlocks.RoundUpToHalf((max - mf) / 15f) : Half.NaN;
            float step = (float)d;
            (scales[b], minimums[b]) = (d, m);
            byte* packed = row + b * half;
            for (int j = 0; j < half; j++)
                packed[j] = (byte)(Code(y[j], mf, step) | Code(y[j + half], mf, step) << 4);
        }
    }

    private static int Code(float y, float min, float step) =>
        step > 0 && float.IsFinite(step) && float.IsFinite(min) ? (int)Math.Clamp(MathF.Round((y - min) / step), 0f, 15f) : 0;

    // x = H⁻¹ (m + d · c) per block
    public static void Decode(byte* row, float* x, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, half = block / 2;
        var scales = (Half*)(row + headDim / 2);
        Half* minimums = scales + blocks;
        for (int b = 0; b < blocks; b++)
        {
            float d = (float)scales[b], m = (float)minimums[b];
            byte* packed = row + b * half;
            for (int j = 0; j < half; j++)
            {
                x[b * block + j] = MathF.FusedMultiplyAdd(d, packed[j] & 0x0F, m);
                x[b * block + j + half] = MathF.FusedMultiplyAdd(d, packed[j] >> 4, m);
            }
        }
        TRotation.Apply(new Span<float>(x, headDim), block);
    }

    // H q, rounded per block as Q8Rows.RoundQuery, then each block's Σ c_q
    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block;
        Span<float> rotated = stackalloc float[headDim];
        new ReadOnlySpan<float>(q, headDim).CopyTo(rotated);
        TRotation.Apply(rotated, block);
        fixed (float* r = rotated) Q8Rows.RoundQuery(r, scale, prepared, headDim, block);
        var codes = (sbyte*)prepared;
        var sums = (int*)(prepared + KvBlocks.QueryScalesOffset(headDim) + blocks * sizeof(float));
        for (int b = 0; b < blocks; b++)
        {
            int sum = 0;
            for (int i = 0; i < block; i++) sum += codes[b * block + i];
            sums[b] = sum;
        }
    }

    public static void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim) =>
        Scores(key, queries, count, s, sStride, headDim, simd: true);

    public static void ScoresScalar(byte* key, byte* queries, int count, float* s, int sStride, int headDim) =>
        Scores(key, queries, count, s, sStride, headDim, simd: false);

    // s[c] = Σ_b [fl(d_q·d) · Σ c_q·c + fl(d_q·m) · Σ c_q], blocks in order
    private static void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim, bool simd)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, queryBytes = QueryBytes(headDim), offset = KvBlocks.QueryScalesOffset(headDim);
        var scales = (Half*)(key + headDim / 2);
        Half* minimums = scales + blocks;
        float* d = stackalloc float[2 * blocks];
        float* m = d + blocks;
        for (int b = 0; b < blocks; b++) (d[b], m[b]) = ((float)scales[b], (float)minimums[b]);
        for (int c = 0; c < count; c++)
        {
            byte* q = queries + c * queryBytes;
            var queryScales = (float*)(q + offset);
            var querySums = (int*)(queryScales + blocks);
            float sum = 0;
            for (int b = 0; b < blocks; b++)
            {
                float dq = queryScales[b];
                sum = MathF.FusedMultiplyAdd(BlockDot.Nibbles((sbyte*)q + b * block, key + b * block / 2, block, simd), dq * d[b], sum);
                sum = MathF.FusedMultiplyAdd(querySums[b], dq * m[b], sum);
            }
            s[c * sStride] = sum;
        }
    }

    // acc_c[i] = fma(p_c · d[b], c[i], acc_c[i]) and acc_c[headDim + b] = fma(p_c, m[b], acc_c[headDim + b])
    public static void AddValues(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, length = AccumulatorLength(headDim);
        var scales = (Half*)(value + headDim / 2);
        Half* minimums = scales + blocks;
        sbyte* codes = stackalloc sbyte[block];
        float* widened = stackalloc float[headDim];
        for (int b = 0; b < blocks; b++)
        {
            KvVectors.UnpackNibbles(value + b * block / 2, codes, block);
            KvVectors.Int8ToSingle(codes, widened + b * block, block);
        }
        for (int b = 0; b < blocks; b++)
        {
            float d = (float)scales[b], m = (float)minimums[b];
            for (int c = 0; c < count; c++)
            {
                float pc = p[c * pStride];
                if (pc == 0) continue;
                float* a = acc + c * length;
                KvVectors.AddScaled(widened + b * block, pc * d, a + b * block, block);
                a[headDim + b] = MathF.FusedMultiplyAdd(pc, m, a[headDim + b]);
            }
        }
    }

    public static void ScoreRows(byte* keys, int rowBytes, int rows, byte* queries, int count, float* s, int sStride, int headDim)
    {
        for (int t = 0; t < rows; t++) Scores(keys + t * rowBytes, queries, count, s + t, sStride, headDim);
    }

    /// <summary>Rows whose scales <see cref="AddValueRows"/> widens at once.</summary>
    private const int RowRun = 32;

    // blocks of 32: per run of rows, every row's d and m widened once, then per query and block the codes of every row
    // widened in registers (KvVectors.AddScaledNibbles32); other block sizes row by row
    public static void AddValueRows(byte* values, int rowBytes, int rows, float* p, int pStride, int count, float* acc, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, length = AccumulatorLength(headDim);
        if (block != 32)
        {
            for (int t = 0; t < rows; t++) AddValues(values + t * rowBytes, p + t, pStride, count, acc, headDim);
            return;
        }
        Half* halves = stackalloc Half[RowRun * 2 * blocks];
        float* dm = stackalloc float[RowRun * 2 * blocks]; // (RowRun, 2 · blocks) each row's scales, then minimums
        float* w = stackalloc float[RowRun];               // (RowRun) p · d of one query and block
        for (int first = 0; first < rows; first += RowRun)
        {
            int run = Math.Min(RowRun, rows - first);
            byte* runValues = values + first * rowBytes;
            for (int t = 0; t < run; t++)
                Buffer.MemoryCopy(runValues + t * rowBytes + headDim / 2, halves + t * 2 * blocks, 2 * blocks * sizeof(ushort), 2 * blocks * sizeof(ushort));
            KvVectors.HalfToSingle(halves, dm, run * 2 * blocks);
            for (int c = 0; c < count; c++)
            {
                float* pc = p + c * pStride + first, a = acc + c * length;
                for (int b = 0; b < blocks; b++)
                {
                    float minimums = a[headDim + b];
                    for (int t = 0; t < run; t++)
                    {
                        w[t] = pc[t] * dm[t * 2 * blocks + b];
                        if (pc[t] != 0) minimums = MathF.FusedMultiplyAdd(pc[t], dm[t * 2 * blocks + blocks + b], minimums);
                    }
                    a[headDim + b] = minimums;
                    KvVectors.AddScaledNibbles32(runValues + b * block / 2, rowBytes, run, pc, 1, w, a + b * block);
                }
            }
        }
    }

    public static void AddValuesScalar(byte* value, float* p, int pStride, int count, float* acc, int headDim)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, half = block / 2, length = AccumulatorLength(headDim);
        var scales = (Half*)(value + headDim / 2);
        Half* minimums = scales + blocks;
        for (int b = 0; b < blocks; b++)
        {
            float d = (float)scales[b], m = (float)minimums[b];
            byte* packed = value + b * half;
            for (int c = 0; c < count; c++)
            {
                float pc = p[c * pStride];
                if (pc == 0) continue;
                float w = pc * d;
                float* a = acc + c * length + b * block;
                for (int j = 0; j < half; j++)
                {
                    a[j] = MathF.FusedMultiplyAdd(w, packed[j] & 0x0F, a[j]);
                    a[j + half] = MathF.FusedMultiplyAdd(w, packed[j] >> 4, a[j + half]);
                }
                acc[c * length + headDim + b] = MathF.FusedMultiplyAdd(pc, m, acc[c * length + headDim + b]);
            }
        }
    }

    // output = H⁻¹ ((acc[i] + acc[headDim + b]) · inverse)
    public static void Finish(float* acc, float inverse, float* output, int headDim)
    {
        int block = KvBlocks.Size(headDim);
        for (int i = 0; i < headDim; i++) output[i] = (acc[i] + acc[headDim + i / block]) * inverse;
        TRotation.Apply(new Span<float>(output, headDim), block);
    }
}
