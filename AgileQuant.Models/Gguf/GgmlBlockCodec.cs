using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// ggml's reference (scalar) block codecs: the Q8_0 and Q4_0 quantizers (so files we write hold the blocks llama.cpp
/// would) and a dequantizer for every type <see cref="GgmlTypeTraits"/> reads. Written from ggml-org/llama.cpp
/// ggml/src/ggml-quants.c (<c>quantize_row_*_ref</c>, <c>dequantize_row_*</c>, read at commit 01243c5) with the same
/// float operations in the same order, so each output is bit-identical to ggml's (GgmlTypeTraitsTests compares them
/// with llama.cpp's own <c>dequantize_row_*</c>).
/// </summary>
internal static unsafe partial class GgmlBlockCodec
{
    /// <summary>
    /// Quantizes a row x (n, a multiple of 32) into n / 32 Q8_0 blocks:
    /// <c>d = max|x| / 127</c>, <c>q = round(x / d)</c> (round half away from zero), d stored as fp16.
    /// </summary>
    public static void QuantizeRowQ8_0(ReadOnlySpan<float> x, Span<BlockQ8_0> blocks)
    {
        RequireBlocks(x.Length, blocks.Length, BlockQ8_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ReadOnlySpan<float> v = x.Slice(b * BlockQ8_0.Elements, BlockQ8_0.Elements);
            float amax = 0;
            foreach (float value in v) amax = MathF.Max(amax, MathF.Abs(value));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            blocks[b].Scale = (Half)d;
            for (int i = 0; i < BlockQ8_0.Elements; i++) blocks[b].Codes[i] = (sbyte)MathF.Round(v[i] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// Quantizes a row x (n, a multiple of 32) into n / 32 Q4_0 blocks: m = the element of largest magnitude
    /// (sign kept), <c>d = m / −8</c>, <c>q = min(15, trunc(x / d + 8.5))</c>, d stored as fp16.
    /// </summary>
    public static void QuantizeRowQ4_0(ReadOnlySpan<float> x, Span<BlockQ4_0> blocks)
    {
        RequireBlocks(x.Length, blocks.Length, BlockQ4_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ReadOnlySpan<float> v = x.Slice(b * BlockQ4_0.Elements, BlockQ4_0.Elements);
            float d = LargestMagnitude(v) / -8f;
            float id = d != 0 ? 1f / d : 0f;
            blocks[b].Scale = (Half)d;
            for (int j = 0; j < BlockQ4_0.Elements / 2; j++)
            {
                int low = Math.Min(15, (int)(v[j] * id + 8.5f));
                int high = Math.Min(15, (int)(v[j + 16] * id + 8.5f));
                blocks[b].Nibbles[j] = (byte)(low | high << 4);
            }
        }
    }

    /// <summary>y[32b + i] = d_b · q_b[i].</summary>
    public static void DequantizeRowQ8_0(ReadOnlySpan<BlockQ8_0> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ8_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            float d = (float)blocks[b].Scale;
            for (int i = 0; i < BlockQ8_0.Elements; i++) y[b * BlockQ8_0.Elements + i] = d * blocks[b].Codes[i];
        }
    }

    /// <summary>y[32b + i] = d_b · (q_b[i] − 8), q_b[j] = low nibble of byte j and q_b[j + 16] = its high nibble.</summary>
    public static void DequantizeRowQ4_0(ReadOnlySpan<BlockQ4_0> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ4_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            float d = (float)blocks[b].Scale;
            for (int j = 0; j < BlockQ4_0.Elements / 2; j++)
            {
                byte pair = blocks[b].Nibbles[j];
                y[b * BlockQ4_0.Elements + j] = d * ((pair & 0xF) - 8);
                y[b * BlockQ4_0.Elements + j + 16] = d * ((pair >> 4) - 8);
            }
        }
    }

    /// <summary>The 16-entry non-linear codebook K of IQ4_NL and IQ4_XS (ggml's <c>kvalues_iq4nl</c>), indexed by nibble.</summary>
    public static ReadOnlySpan<sbyte> Iq4Codebook => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>y[32b + i] = d_b · q_b[i] + m_b, q_b[j] = low nibble of byte j and q_b[j + 16] = its high nibble.</summary>
    public static void DequantizeRowQ4_1(ReadOnlySpan<BlockQ4_1> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ4_1.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ4_1 block = ref blocks[b];
            float d = (float)block.Scale, m = (float)block.Min;
            Span<float> w = y.Slice(b * BlockQ4_1.Elements, BlockQ4_1.Elements);
            for (int j = 0; j < BlockQ4_1.Elements / 2; j++)
            {
                w[j] = (block.Nibbles[j] & 0xF) * d + m;
                w[j + 16] = (block.Nibbles[j] >> 4) * d + m;
            }
        }
    }

    /// <summary>y[32b + i] = d_b · (q_b[i] − 16), q = low nibble (as in Q4_0) | bit i of the high-bit word &lt;&lt; 4.</summary>
    public static void DequantizeRowQ5_0(ReadOnlySpan<BlockQ5_0> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ5_0.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ5_0 block = ref blocks[b];
            float d = (float)block.Scale;
            uint high = HighBitWord(in block.HighBits[0]);
            Span<float> w = y.Slice(b * BlockQ5_0.Elements, BlockQ5_0.Elements);
            for (int j = 0; j < BlockQ5_0.Elements / 2; j++)
            {
                w[j] = ((block.Nibbles[j] & 0xF | FifthBit(high, j)) - 16) * d;
                w[j + 16] = ((block.Nibbles[j] >> 4 | FifthBit(high, j + 16)) - 16) * d;
            }
        }
    }

    /// <summary>y[32b + i] = d_b · q_b[i] + m_b, q = low nibble (as in Q4_0) | bit i of the high-bit word &lt;&lt; 4.</summary>
    public static void DequantizeRowQ5_1(ReadOnlySpan<BlockQ5_1> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ5_1.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ5_1 block = ref blocks[b];
            float d = (float)block.Scale, m = (float)block.Min;
            uint high = HighBitWord(in block.HighBits[0]);
            Span<float> w = y.Slice(b * BlockQ5_1.Elements, BlockQ5_1.Elements);
            for (int j = 0; j < BlockQ5_1.Elements / 2; j++)
            {
                w[j] = (block.Nibbles[j] & 0xF | FifthBit(high, j)) * d + m;
                w[j + 16] = (block.Nibbles[j] >> 4 | FifthBit(high, j + 16)) * d + m;
            }
        }
    }

    /// <summary>Sub-block s of 16: y = d · (sc_s &amp; 15) · q − dmin · (sc_s &gt;&gt; 4), layout in <see cref="BlockQ2_K"/>.</summary>
    public static void DequantizeRowQ2_K(ReadOnlySpan<BlockQ2_K> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ2_K.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ2_K block = ref blocks[b];
            float d = (float)block.Scale, dmin = (float)block.Min;
            Span<float> w = y.Slice(b * BlockQ2_K.Elements, BlockQ2_K.Elements);
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 2; k++)
                    {
                        byte sc = block.Scales[8 * h + 2 * j + k];
                        float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                        for (int l = 0; l < 16; l++)
                            w[128 * h + 32 * j + 16 * k + l] = dl * (block.Codes[32 * h + 16 * k + l] >> 2 * j & 3) - ml;
                    }
        }
    }

    /// <summary>Sub-block s of 16: y = d · (sc_s − 32) · (q − 4 · (1 − hbit)), layout in <see cref="BlockQ3_K"/>.</summary>
    public static void DequantizeRowQ3_K(ReadOnlySpan<BlockQ3_K> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ3_K.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ3_K block = ref blocks[b];
            float d = (float)block.Scale;
            Span<float> w = y.Slice(b * BlockQ3_K.Elements, BlockQ3_K.Elements);
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 2; k++)
                    {
                        int s = 8 * h + 2 * j + k;
                        int low = s < 8 ? block.Scales[s] & 0xF : block.Scales[s - 8] >> 4;
                        int scale = (low | (block.Scales[8 + s % 4] >> 2 * (s / 4) & 3) << 4) - 32;
                        float dl = d * scale;
                        int bit = 4 * h + j;
                        for (int l = 0; l < 16; l++)
                        {
                            int q = (block.Codes[32 * h + 16 * k + l] >> 2 * j & 3) - ((block.HighMask[16 * k + l] >> bit & 1) != 0 ? 0 : 4);
                            w[128 * h + 32 * j + 16 * k + l] = dl * q;
                        }
                    }
        }
    }

    /// <summary>Sub-block s of 32: y = d · sc_s · q − dmin · m_s, layout in <see cref="BlockQ4_K"/>.</summary>
    public static void DequantizeRowQ4_K(ReadOnlySpan<BlockQ4_K> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ4_K.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ4_K block = ref blocks[b];
            DequantizeKBlock((float)block.Scale, (float)block.Min, MemoryMarshal.CreateReadOnlySpan(in block.Scales[0], 12),
                MemoryMarshal.CreateReadOnlySpan(in block.Nibbles[0], 128), [], y.Slice(b * BlockQ4_K.Elements, BlockQ4_K.Elements));
        }
    }

    /// <summary>Sub-block s of 32: y = d · sc_s · q − dmin · m_s with 5-bit q, layout in <see cref="BlockQ5_K"/>.</summary>
    public static void DequantizeRowQ5_K(ReadOnlySpan<BlockQ5_K> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ5_K.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ5_K block = ref blocks[b];
            DequantizeKBlock((float)block.Scale, (float)block.Min, MemoryMarshal.CreateReadOnlySpan(in block.Scales[0], 12),
                MemoryMarshal.CreateReadOnlySpan(in block.Nibbles[0], 128), MemoryMarshal.CreateReadOnlySpan(in block.HighBits[0], 32),
                y.Slice(b * BlockQ5_K.Elements, BlockQ5_K.Elements));
        }
    }

    /// <summary>Sub-block s of 16: y = d · sc_s · (q − 32) with 6-bit q, layout in <see cref="BlockQ6_K"/>.</summary>
    public static void DequantizeRowQ6_K(ReadOnlySpan<BlockQ6_K> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockQ6_K.Elements);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ6_K block = ref blocks[b];
            float d = (float)block.Scale;
            Span<float> w = y.Slice(b * BlockQ6_K.Elements, BlockQ6_K.Elements);
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 32; l++)
                    {
                        int low = block.Low[64 * h + 32 * (k % 2) + l] >> 4 * (k / 2) & 0xF;
                        int q = (low | (block.High[32 * h + l] >> 2 * k & 3) << 4) - 32;
                        w[128 * h + 32 * k + l] = d * block.Scales[8 * h + 2 * k + l / 16] * q;
                    }
        }
    }

    /// <summary>y[32b + i] = d_b · K[q_b[i]] with the codebook <see cref="Iq4Codebook"/>, nibbles ordered as in Q4_0.</summary>
    public static void DequantizeRowIQ4_NL(ReadOnlySpan<BlockIQ4_NL> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockIQ4_NL.Elements);
        ReadOnlySpan<sbyte> codebook = Iq4Codebook;
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockIQ4_NL block = ref blocks[b];
            float d = (float)block.Scale;
            Span<float> w = y.Slice(b * BlockIQ4_NL.Elements, BlockIQ4_NL.Elements);
            for (int j = 0; j < BlockIQ4_NL.Elements / 2; j++)
            {
                w[j] = d * codebook[block.Nibbles[j] & 0xF];
                w[j + 16] = d * codebook[block.Nibbles[j] >> 4];
            }
        }
    }

    /// <summary>Sub-block s of 32: y = d · (ls_s − 32) · K[q], layout in <see cref="BlockIQ4_XS"/>.</summary>
    public static void DequantizeRowIQ4_XS(ReadOnlySpan<BlockIQ4_XS> blocks, Span<float> y)
    {
        RequireBlocks(y.Length, blocks.Length, BlockIQ4_XS.Elements);
        ReadOnlySpan<sbyte> codebook = Iq4Codebook;
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockIQ4_XS block = ref blocks[b];
            float d = (float)block.Scale;
            Span<float> w = y.Slice(b * BlockIQ4_XS.Elements, BlockIQ4_XS.Elements);
            for (int s = 0; s < 8; s++)
            {
                int ls = (block.ScalesLow[s / 2] >> 4 * (s % 2) & 0xF) | (block.ScalesHigh >> 2 * s & 3) << 4;
                float dl = d * (ls - 32);
                for (int j = 0; j < 16; j++)
                {
                    byte pair = block.Nibbles[16 * s + j];
                    w[32 * s + j] = dl * codebook[pair & 0xF];
                    w[32 * s + j + 16] = dl * codebook[pair >> 4];
                }
            }
        }
    }

    // Q5_0/Q5_1: the four high-bit bytes as one little-endian word; bit i is bit 4 of weight i.
    internal static uint HighBitWord(in byte first) => BinaryPrimitives.ReadUInt32LittleEndian(MemoryMarshal.CreateReadOnlySpan(in first, 4));

    internal static int FifthBit(uint word, int i) => (int)(word >> i & 1) << 4;

    // One Q4_K/Q5_K super-block w (256): weight 64p + 32k + l = d · sc_s · q − dmin · m_s, s = 2p + k, q = nibble k of
    // nibbles[32p + l] plus, for Q5_K (highBits not empty), bit s of highBits[l] as 16.
    private static void DequantizeKBlock(float d, float dmin, ReadOnlySpan<byte> packedScales, ReadOnlySpan<byte> nibbles, ReadOnlySpan<byte> highBits, Span<float> w)
    {
        for (int s = 0; s < 8; s++)
        {
            (int sc, int m) = KQuantScaleMin(packedScales, s);
            float dl = d * sc, ml = dmin * m;
            int p = s / 2, k = s % 2;
            for (int l = 0; l < 32; l++)
            {
                int q = (nibbles[32 * p + l] >> 4 * k & 0xF) + (highBits.IsEmpty ? 0 : (highBits[l] >> s & 1) << 4);
                w[32 * s + l] = dl * q - ml;
            }
        }
    }

    // Q4_K/Q5_K: the 6-bit (scale, min) of sub-block s from the 12 packed bytes b (layout in BlockQ4_K's summary).
    internal static (int Scale, int Min) KQuantScaleMin(ReadOnlySpan<byte> b, int s) => s < 4
        ? (b[s] & 63, b[s + 4] & 63)
        : ((b[s + 4] & 0xF) | (b[s - 4] >> 6) << 4, (b[s + 4] >> 4) | (b[s] >> 6) << 4);

    private static void RequireBlocks(int elements, int blocks, int perBlock)
    {
        if (elements % perBlock != 0 || elements / perBlock != blocks)
            throw new ArgumentException($"Expected {perBlock} elements per block, found {elements} elements for {blocks} blocks.");
    }
}
