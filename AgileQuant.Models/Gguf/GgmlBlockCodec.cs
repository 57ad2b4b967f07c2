using System.Runtime.InteropServices;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// One ggml <c>block_q8_0</c>: <c>w[i] = d · q[i]</c>, i &lt; 32 (ggml/src/ggml-common.h).
/// Bytes: fp16 d, then 32 int8 codes q in weight order.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_0
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 32 (q).</summary>
    public const int Bytes = 34;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>Codes q (32), weight i in byte i.</summary>
    public fixed sbyte Codes[Elements];
}

/// <summary>
/// One ggml <c>block_q4_0</c>: <c>w[i] = d · (q[i] − 8)</c>, i &lt; 32, q in 0..15 (ggml/src/ggml-common.h).
/// Bytes: fp16 d, then 16 bytes of nibbles; byte j holds weight j in its LOW nibble and weight j + 16 in
/// its HIGH nibble (unlike <see cref="Intrinsics.Formats.PackedInt4Matrix"/>, where byte j holds weights 2j and 2j + 1).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_0
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 16 (nibbles).</summary>
    public const int Bytes = 18;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>Nibbles (16): low nibble of byte j = q[j], high nibble = q[j + 16].</summary>
    public fixed byte Nibbles[Elements / 2];
}

/// <summary>
/// The reference (scalar) ggml quantizers and dequantizers of Q8_0 and Q4_0 rows, reproduced from
/// ggml-org/llama.cpp ggml/src/ggml-quants.c (<c>quantize_row_q8_0_ref</c>, <c>quantize_row_q4_0_ref</c>,
/// <c>dequantize_row_q8_0</c>, <c>dequantize_row_q4_0</c>), so files we write hold the blocks llama.cpp would.
/// </summary>
public static unsafe class GgmlBlockCodec
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
            float amax = 0, max = 0;
            foreach (float value in v)
                if (amax < MathF.Abs(value)) { amax = MathF.Abs(value); max = value; }
            float d = max / -8f;
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

    private static void RequireBlocks(int elements, int blocks, int perBlock)
    {
        if (elements % perBlock != 0 || elements / perBlock != blocks)
            throw new ArgumentException($"Expected {perBlock} elements per block, found {elements} elements for {blocks} blocks.");
    }
}
