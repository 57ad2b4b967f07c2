using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// ggml's reference quantizers for the types GGUF export writes besides Q8_0 and Q4_0: Q6_K and Q4_K (what
/// <c>llama-quantize</c> writes without an importance matrix) and Q5_0 (its fallback for Q4_K rows that are not whole
/// super-blocks). Written from the description of <c>quantize_row_q6_K_ref</c>, <c>quantize_row_q4_K_ref</c>,
/// <c>quantize_row_q5_0_ref</c> and their helpers (<c>nearest_int</c>, <c>make_qx_quants</c>, <c>make_qkx2_quants</c>) in
/// ggml-org/llama.cpp ggml/src/ggml-quants.c, with the same float operations in the same order, so the blocks are
/// bit-identical to ggml's (GgmlTypeTraitsTests compares them with <c>ggml_quantize_chunk</c>).
/// </summary>
internal static unsafe partial class GgmlBlockCodec
{
    private const int SuperBlock = 256;

    // Below this largest magnitude a group counts as all zero (GROUP_MAX_EPS).
    private const float GroupMaxEpsilon = 1e-15f;

    /// <summary>
    /// Quantizes a row x (n, a multiple of 256) into n / 256 Q6_K blocks. Per sub-block of 16 the least-squares scale of
    /// 6-bit codes −32..31 (19 candidate scales around max / −32, errors weighted by x²); the 16 scales become int8
    /// sub-scales of one fp16 d (<c>d = max_scale / −128</c>); every weight is then re-quantized with its final
    /// <c>d · sc</c>: <c>q = clamp(round(x / (d · sc)), −32, 31) + 32</c>.
    /// </summary>
    public static void QuantizeRowQ6_K(ReadOnlySpan<float> x, Span<BlockQ6_K> blocks)
    {
        RequireBlocks(x.Length, blocks.Length, BlockQ6_K.Elements);
        Span<sbyte> codes = stackalloc sbyte[SuperBlock]; // L: 6-bit codes + 32
        Span<float> scales = stackalloc float[16];
        for (int i = 0; i < blocks.Length; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * SuperBlock, SuperBlock);
            ref BlockQ6_K block = ref blocks[i];
            float maxScale = 0, maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = SymmetricLeastSquaresScale(v.Slice(16 * ib, 16), 32, codes.Slice(16 * ib, 16));
                scales[ib] = scale;
                if (MathF.Abs(scale) > maxAbsScale)
                {
                    maxAbsScale = MathF.Abs(scale);
                    maxScale = scale;
                }
            }
            if (maxAbsScale < GroupMaxEpsilon)
            {
                block = default;
                continue;
            }
            float iscale = -128f / maxScale;
            block.Scale = (Half)(1 / iscale);
            for (int ib = 0; ib < 16; ib++) block.Scales[ib] = (sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
            for (int j = 0; j < 16; j++)
            {
                float d = (float)block.Scale * block.Scales[j];
                if (d == 0) continue; // the sub-block keeps its first codes
                for (int ii = 0; ii < 16; ii++) codes[16 * j + ii] = (sbyte)(Math.Clamp(NearestInt(v[16 * j + ii] / d), -32, 31) + 32);
            }
            // weight 128h + 32k + l: low nibble in Low[64h + 32(k % 2) + l] (nibble k / 2), 2 high bits in High[32h + l] (bits 2k)
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++)
                {
                    int q1 = codes[128 * h + l], q2 = codes[128 * h + l + 32], q3 = codes[128 * h + l + 64], q4 = codes[128 * h + l + 96];
                    block.Low[64 * h + l] = (byte)(q1 & 0xF | (q3 & 0xF) << 4);
                    block.Low[64 * h + l + 32] = (byte)(q2 & 0xF | (q4 & 0xF) << 4);
                    block.High[32 * h + l] = (byte)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
                }
        }
    }

    /// <summary>
    /// Quantizes a row x (n, a multiple of 256) into n / 256 Q4_K blocks. Per sub-block of 32 the weighted
    /// least-squares scale and minimum of 4-bit codes 0..15 (21 candidate steps, weights <c>rms(x) + |x|</c>); scales and
    /// minimums become 6-bit sub-factors of fp16 <c>d = max_scale / 63</c> and <c>dmin = max_min / 63</c>; every weight is
    /// then re-quantized: <c>q = clamp(round((x + dmin · m) / (d · sc)), 0, 15)</c>.
    /// </summary>
    public static void QuantizeRowQ4_K(ReadOnlySpan<float> x, Span<BlockQ4_K> blocks)
    {
        RequireBlocks(x.Length, blocks.Length, BlockQ4_K.Elements);
        Span<byte> codes = stackalloc byte[SuperBlock];
        Span<byte> candidate = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        for (int i = 0; i < blocks.Length; i++)
        {
            ReadOnlySpan<float> v = x.Slice(i * SuperBlock, SuperBlock);
            ref BlockQ4_K block = ref blocks[i];
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 8; j++)
            {
                ReadOnlySpan<float> sub = v.Slice(32 * j, 32);
                float sumSquares = 0;
                for (int l = 0; l < 32; l++) sumSquares += sub[l] * sub[l];
                float averageMagnitude = MathF.Sqrt(sumSquares / 32);
                for (int l = 0; l < 32; l++) weights[l] = averageMagnitude + MathF.Abs(sub[l]);
                scales[j] = AffineLeastSquaresScale(sub, weights, 15, codes.Slice(32 * j, 32), out mins[j], candidate, -1f, 0.1f, 20);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }
            float inverseScale = maxScale > 0 ? 63f / maxScale : 0f;
            float inverseMin = maxMin > 0 ? 63f / maxMin : 0f;
            Span<byte> packed = MemoryMarshal.CreateSpan(ref block.Scales[0], 12);
            for (int j = 0; j < 8; j++)
            {
                int ls = Math.Min(63, (int)unchecked((byte)NearestInt(inverseScale * scales[j])));
                int lm = Math.Min(63, (int)unchecked((byte)NearestInt(inverseMin * mins[j])));
                if (j < 4)
                {
                    packed[j] = (byte)ls;
                    packed[j + 4] = (byte)lm;
                }
                else
                {
                    packed[j + 4] = (byte)(ls & 0xF | (lm & 0xF) << 4);
                    packed[j - 4] |= (byte)(ls >> 4 << 6);
                    packed[j] |= (byte)(lm >> 4 << 6);
                }
            }
            block.Scale = (Half)(maxScale / 63f);
            block.Min = (Half)(maxMin / 63f);
            for (int j = 0; j < 8; j++)
            {
                (int sc, int m) = KQuantScaleMin(packed, j);
                float d = (float)block.Scale * sc;
                if (d == 0) continue; // the sub-block keeps its first codes
                float dm = (float)block.Min * m;
                for (int ii = 0; ii < 32; ii++) codes[32 * j + ii] = (byte)Math.Clamp(NearestInt((v[32 * j + ii] + dm) / d), 0, 15);
            }
            // byte 32p + l: weight 64p + l in the low nibble, weight 64p + 32 + l in the high one
            for (int p = 0; p < 4; p++)
                for (int l = 0; l < 32; l++) block.Nibbles[32 * p + l] = (byte)(codes[64 * p + l] | codes[64 * p + 32 + l] << 4);
        }
    }

    /// <summary>
    /// Quantizes a row x (n, a multiple of 32) into n / 32 Q5_0 blocks: m = the element of largest magnitude (sign kept),
    /// <c>d = m / −16</c>, <c>q = min(31, trunc(x / d + 16.5))</c>, d stored as fp16.
    /// </summary>
    public static void QuantizeRowQ5_0(ReadOnlySpan<float> x, Span<BlockQ5_0> blocks)
    {
        RequireBlocks(x.Length, blocks.Length, BlockQ5_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ReadOnlySpan<float> v = x.Slice(b * BlockQ5_0.Elements, BlockQ5_0.Elements);
            float d = LargestMagnitude(v) / -16f;
            float id = d != 0 ? 1f / d : 0f;
            blocks[b].Scale = (Half)d;
            uint high = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = Math.Min(31, (int)(sbyte)(v[j] * id + 16.5f));
                int upper = Math.Min(31, (int)(sbyte)(v[j + 16] * id + 16.5f));
                blocks[b].Nibbles[j] = (byte)(low & 0xF | (upper & 0xF) << 4);
                high |= (uint)(low >> 4 & 1) << j | (uint)(upper >> 4 & 1) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(MemoryMarshal.CreateSpan(ref blocks[b].HighBits[0], 4), high);
        }
    }

    // The element of largest magnitude, its sign kept (the first of equals; 0 for an empty or all-zero span).
    private static float LargestMagnitude(ReadOnlySpan<float> values)
    {
        float amax = 0, max = 0;
        foreach (float value in values)
            if (MathF.Abs(value) > amax) { amax = MathF.Abs(value); max = value; }
        return max;
    }

    // ggml's nearest_int: round half to even through the float 1.5 · 2^23 (exact for |x| ≤ 2^22).
    private static int NearestInt(float value) => (BitConverter.SingleToInt32Bits(value + 12582912f) & 0x007FFFFF) - 0x00400000;

    // make_qx_quants with rmse_type 1 and no importance weights: codes[i] = l + nmax with l in −nmax..nmax − 1; returns the
    // scale with the best Σ w·x·l / Σ w·l² (w = x²) over iscale = −(nmax + 0.1·k) / max, k = 0, ±1 .. ±9.
    private static float SymmetricLeastSquaresScale(ReadOnlySpan<float> x, int nmax, Span<sbyte> codes)
    {
        float max = LargestMagnitude(x);
        if (MathF.Abs(max) < GroupMaxEpsilon)
        {
            codes.Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < x.Length; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            codes[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < x.Length; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < x.Length; i++) codes[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    // make_qkx2_quants without the mean-absolute option: codes 0..nmax and (scale, −min) minimizing Σ w · (scale · q + min − x)²
    // over iscale = (rmin + rdelta · k + nmax) / (max − min), k = 0..steps (min ≤ 0 always); returns the scale and −min.
    private static float AffineLeastSquaresScale(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<byte> codes, out float negatedMin,
        Span<byte> candidate, float rmin, float rdelta, int steps)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0], sumX = sumW * x[0];
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            codes.Clear();
            negatedMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < x.Length; i++)
        {
            codes[i] = (byte)Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            float diff = scale * codes[i] + min - x[i];
            bestError += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= steps; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < x.Length; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                candidate[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float determinant = sumW * sumL2 - sumL * sumL;
            if (!(determinant > 0)) continue;
            float thisScale = (sumW * sumXL - sumX * sumL) / determinant;
            float thisMin = (sumL2 * sumX - sumL * sumXL) / determinant;
            if (thisMin > 0)
            {
                thisMin = 0;
                thisScale = sumXL / sumL2;
            }
            float error = 0;
            for (int i = 0; i < x.Length; i++)
            {
                float diff = thisScale * candidate[i] + thisMin - x[i];
                error += weights[i] * (diff * diff);
            }
            if (error < bestError)
            {
                candidate[..x.Length].CopyTo(codes);
                bestError = error;
                scale = thisScale;
                min = thisMin;
            }
        }
        negatedMin = -min;
        return scale;
    }
}
