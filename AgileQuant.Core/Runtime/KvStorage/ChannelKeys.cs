using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// <see cref="KvCacheType.Q8"/> keys: int8 codes with one fp16 scale per channel over each group of 32 tokens of a
/// key/value head (KIVI, arXiv 2402.02750: key outliers sit in fixed channels, so a per-channel step follows them
/// where a per-token one is set by them). Group = 32 rows of headDim int8 codes (token-major), then headDim fp16 scales;
/// a channel stands for d · c with d = max|x| / 127 over the group rounded up to fp16, c = round(x / d).
/// </summary>
/// <remarks>
/// Scores run on integers: per group, each query is multiplied by the channel scales and rounded per block of
/// <see cref="KvBlocks.Size"/> channels to int16 (<see cref="ChannelQuery"/>), and a key row's score is
/// Σ_b d_b · Σ c_q · c_k (<see cref="BlockDot.Int16Signed"/>). Per-token blocks (llama.cpp's q8_0 for keys) against these:
/// docs/accuracy.md, "KV cache".
/// </remarks>
[SkipLocalsInit]
internal unsafe struct Q8ChannelKeys : IKeyFormat
{
    public static int GroupSlots => 32;

    public static int GroupBytes(int headDim) => GroupSlots * headDim + headDim * sizeof(ushort);

    public static int QueryBytes(int headDim) => headDim * sizeof(float);

    public static int GroupQueryBytes(int headDim) => ChannelQuery.ScalesOffset(headDim) + headDim / KvBlocks.Size(headDim) * sizeof(float);

    // prepared = scale · q (FP32: the partial group's fp16 rows are scored with it as it is)
    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, headDim), scale, new Span<float>((float*)prepared, headDim));

    // per channel c: d = fp16↑(max_t |x[t, c]| / 127), codes[t, c] = round(x[t, c] / d); not finite: d = NaN
    public static void EncodeGroup(float* rows, byte* group, int headDim)
    {
        var codes = (sbyte*)group;
        var scales = (Half*)(group + GroupSlots * headDim);
        for (int c = 0; c < headDim; c++)
        {
            float max = 0;
            bool finite = true;
            for (int t = 0; t < GroupSlots; t++)
            {
                float x = rows[t * headDim + c];
                finite &= float.IsFinite(x);
                max = MathF.Max(max, MathF.Abs(x));
            }
            Half d = finite ? KvBlocks.RoundUpToHalf(max / 127f) : Half.NaN;
            scales[c] = d;
            float step = (float)d;
            bool usable = step > 0 && float.IsFinite(step);
            for (int t = 0; t < GroupSlots; t++)
                codes[t * headDim + c] = usable ? (sbyte)Math.Clamp(MathF.Round(rows[t * headDim + c] / step), -127f, 127f) : (sbyte)0;
        }
    }

    public static void DecodeGroup(byte* group, float* rows, int headDim)
    {
        var scales = (Half*)(group + GroupSlots * headDim);
        for (int t = 0; t < GroupSlots; t++)
            for (int c = 0; c < headDim; c++) rows[t * headDim + c] = (float)scales[c] * ((sbyte*)group)[t * headDim + c];
    }

    public static void ScoreGroup(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim) =>
        Score(group, first, slots, queries, groupQueries, count, s, sStride, headDim, simd: true);

    public static void ScoreGroupScalar(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim) =>
        Score(group, first, slots, queries, groupQueries, count, s, sStride, headDim, simd: false);

    // per query: q'[c] = q[c] · d[c] rounded per block to int16; s[t] = Σ_b d_q[b] · Σ_i c_q[i] · c_k[t, i], blocks in order
    private static void Score(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim, bool simd)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, offset = ChannelQuery.ScalesOffset(headDim), queryBytes = GroupQueryBytes(headDim);
        var scales = (Half*)(group + GroupSlots * headDim);
        float* d = stackalloc float[headDim]; // (headDim) the group's channel scales, widened once for every query
        KvVectors.HalfToSingle(scales, d, headDim);
        for (int c = 0; c < count; c++)
            ChannelQuery.Prepare((float*)(queries + c * QueryBytes(headDim)), d, null, groupQueries + c * queryBytes, headDim);
        for (int t = 0; t < slots; t++)
        {
            var key = (sbyte*)group + (first + t) * headDim;
            for (int c = 0; c < count; c++)
            {
                byte* q = groupQueries + c * queryBytes;
                var queryScales = (float*)(q + offset);
                float sum = 0;
                for (int b = 0; b < blocks; b++)
                    sum = MathF.FusedMultiplyAdd(BlockDot.Int16Signed((short*)q + b * block, key + b * block, block, simd), queryScales[b], sum);
                s[c * sStride + t] = sum;
            }
        }
    }
}

/// <summary>
/// <see cref="KvCacheType.Q4"/> keys: 4-bit codes with an fp16 scale and minimum per channel over each group of 16 tokens
/// of a key/value head (KIVI's per-channel keys, with the smaller group the 4-bit step needs: docs/accuracy.md, "KV cache").
/// Group = 16 rows of headDim/2 bytes (within a row, byte j of each block of <see cref="KvBlocks.Size"/> channels holds
/// c[j] in its low and c[j + B/2] in its high nibble), then headDim fp16 scales, then headDim fp16 minimums; a channel
/// stands for m + d · c, m = min rounded down, d = (max − m) / 15 rounded up to fp16, c ∈ [0, 15].
/// </summary>
/// <remarks>
/// A group's query is q'[c] = q[c] · d[c] rounded per block to int16 (<see cref="ChannelQuery"/>), plus the constant
/// Σ_c q[c] · m[c] (FP32); a key row's score is that constant plus Σ_b d_b · Σ c_q · c_k (<see cref="BlockDot.Int16Nibbles"/>).
/// </remarks>
[SkipLocalsInit]
internal unsafe struct Q4ChannelKeys : IKeyFormat
{
    public static int GroupSlots => 16;

    public static int GroupBytes(int headDim) => GroupSlots * headDim / 2 + 2 * headDim * sizeof(ushort);

    public static int QueryBytes(int headDim) => headDim * sizeof(float);

    // int16 codes, padded to whole floats, the blocks' FP32 scales, then the FP32 constant Σ q · m
    public static int GroupQueryBytes(int headDim) => ChannelQuery.ScalesOffset(headDim) + (headDim / KvBlocks.Size(headDim) + 1) * sizeof(float);

    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, headDim), scale, new Span<float>((float*)prepared, headDim));

    // per channel c: m = fp16↓(min_t x[t, c]), d = fp16↑((max_t x[t, c] − m) / 15), codes round((x − m) / d); not finite: NaN
    public static void EncodeGroup(float* rows, byte* group, int headDim)
    {
        int block = KvBlocks.Size(headDim), half = block / 2, rowBytes = headDim / 2;
        var scales = (Half*)(group + GroupSlots * rowBytes);
        Half* minimums = scales + headDim;
        Span<byte> codes = stackalloc byte[GroupSlots];
        new Span<byte>(group, GroupSlots * rowBytes).Clear();
        for (int c = 0; c < headDim; c++)
        {
            float min = float.PositiveInfinity, max = float.NegativeInfinity;
            bool finite = true;
            for (int t = 0; t < GroupSlots; t++)
            {
                float x = rows[t * headDim + c];
                finite &= float.IsFinite(x);
                min = MathF.Min(min, x);
                max = MathF.Max(max, x);
            }
            Half m = finite ? KvBlocks.RoundDownToHalf(min) : Half.NaN;
            float mf = (float)m;
            Half d = finite ? KvBlocks.RoundUpToHalf((max - mf) / 15f) : Half.NaN;
            float step = (float)d;
            (scales[c], minimums[c]) = (d, m);
            bool usable = step > 0 && float.IsFinite(step) && float.IsFinite(mf);
            // channel c sits in block c / B at position j = c % B: low nibble of byte j (j < B/2), else high nibble of byte j − B/2
            int b = c / block, j = c % block, byteIndex = b * half + (j < half ? j : j - half), shift = j < half ? 0 : 4;
            for (int t = 0; t < GroupSlots; t++)
            {
                int code = usable ? (int)Math.Clamp(MathF.Round((rows[t * headDim + c] - mf) / step), 0f, 15f) : 0;
                group[t * rowBytes + byteIndex] |= (byte)(code << shift);
            }
        }
    }

    public static void DecodeGroup(byte* group, float* rows, int headDim)
    {
        int block = KvBlocks.Size(headDim), half = block / 2, rowBytes = headDim / 2;
        var scales = (Half*)(group + GroupSlots * rowBytes);
        Half* minimums = scales + headDim;
        for (int t = 0; t < GroupSlots; t++)
            for (int c = 0; c < headDim; c++)
            {
                int b = c / block, j = c % block;
                byte packed = group[t * rowBytes + b * half + (j < half ? j : j - half)];
                int code = j < half ? packed & 0x0F : packed >> 4;
                rows[t * headDim + c] = MathF.FusedMultiplyAdd((float)scales[c], code, (float)minimums[c]);
            }
    }

    public static void ScoreGroup(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim) =>
        Score(group, first, slots, queries, groupQueries, count, s, sStride, headDim, simd: true);

    public static void ScoreGroupScalar(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim) =>
        Score(group, first, slots, queries, groupQueries, count, s, sStride, headDim, simd: false);

    // per query: q'[c] = q[c] · d[c] rounded per block to int16, K = Σ_c q[c] · m[c]; s[t] = K + Σ_b d_q[b] · Σ_i c_q[i] · c_k[t, i]
    private static void Score(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim, bool simd)
    {
        int block = KvBlocks.Size(headDim), blocks = headDim / block, offset = ChannelQuery.ScalesOffset(headDim), queryBytes = GroupQueryBytes(headDim);
        int rowBytes = headDim / 2;
        var scales = (Half*)(group + GroupSlots * rowBytes);
        Half* minimums = scales + headDim;
        int* sums = stackalloc int[blocks]; // (blocks) one key row's Σ c_q · c_k per block
        float* d = stackalloc float[2 * headDim], m = d + headDim; // (2, headDim) the group's channel scales and minimums, widened once for every query
        KvVectors.HalfToSingle(scales, d, 2 * headDim);             // the minimums follow the scales in the group
        for (int c = 0; c < count; c++)
            ChannelQuery.Prepare((float*)(queries + c * QueryBytes(headDim)), d, m, groupQueries + c * queryBytes, headDim);
        for (int t = 0; t < slots; t++)
        {
            byte* key = group + (first + t) * rowBytes;
            for (int c = 0; c < count; c++)
            {
                byte* q = groupQueries + c * queryBytes;
                var queryScales = (float*)(q + offset);
                BlockDot.Int16NibblesRow((short*)q, key, block, blocks, sums, simd);
                float sum = queryScales[blocks];
                for (int b = 0; b < blocks; b++) sum = MathF.FusedMultiplyAdd(sums[b], queryScales[b], sum);
                s[c * sStride + t] = sum;
            }
        }
    }
}

/// <summary>
/// A query prepared against one group of per-channel keys (<see cref="Q8ChannelKeys"/>, <see cref="Q4ChannelKeys"/>):
/// q'[c] = q[c] · d[c] rounded per block of <see cref="KvBlocks.Size"/> channels to int16 (step max|q'| / 32767), so that
/// the channel scales, which differ by the keys' outlier channels, cost the query no precision worth counting (an int8
/// query would lose the small channels to the block's largest).
/// </summary>
[SkipLocalsInit]
internal static unsafe class ChannelQuery
{
    /// <summary>Bytes from the start of a prepared query to its per-block scales: the int16 codes, padded to whole floats.</summary>
    public static int ScalesOffset(int headDim) => (2 * headDim + 3) & ~3;

    /// <summary>
    /// prepared ← the int16 codes of q'[c] = q[c] · d[c] per block, then the blocks' FP32 steps; with minimums, then the
    /// FP32 constant Σ_c q[c] · m[c]. The group's channel scales d and minimums m come widened to FP32 (once per group).
    /// </summary>
    public static void Prepare(float* q, float* scales, float* minimums, byte* prepared, int headDim)
    {
        float* scaled = stackalloc float[headDim];
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, headDim), new ReadOnlySpan<float>(scales, headDim), new Span<float>(scaled, headDim));
        float constant = minimums != null ? KvVectors.Dot(q, minimums, headDim) : 0; // Σ q·m in KvVectors.Dot's lanes
        int block = KvBlocks.Size(headDim), blocks = headDim / block;
        var codes = (short*)prepared;
        var steps = (float*)(prepared + ScalesOffset(headDim));
        for (int b = 0; b < blocks; b++)
        {
            var values = new ReadOnlySpan<float>(scaled + b * block, block);
            float max = MathF.Abs(TensorPrimitives.MaxMagnitude(values));
            bool usable = max > 0 && float.IsFinite(max);
            steps[b] = usable ? max / 32767f : float.IsFinite(max) ? 0f : float.NaN;
            float inverse = usable ? 32767f / max : 0f;
            if (usable) KvVectors.RoundToInt16(scaled + b * block, inverse, codes + b * block, block);
            else
                for (int i = 0; i < block; i++) codes[b * block + i] = (short)Math.Clamp(MathF.Round(values[i] * inverse), -32767f, 32767f);
        }
        if (minimums != null) steps[blocks] = constant;
    }
}
