using System.Runtime.InteropServices;

namespace AgileQuant.Models.Gguf;

// ggml's quantized block layouts, written from the format descriptions in ggml-org/llama.cpp
// ggml/src/ggml-common.h and the dequantizers in ggml/src/ggml-quants.c (read at commit 01243c5).
// Every block is little-endian, packed (no padding), and a row of n weights is n / Elements blocks in order.
// "Nibble j" of a byte means its low 4 bits for the first half of a run and its high 4 bits for the second,
// as each doc comment below spells out; GgmlTypeTraitsTests checks every size and field offset against ggml.

/// <summary>
/// One ggml <c>block_q8_0</c>: <c>w[i] = d · q[i]</c>, i &lt; 32.
/// Bytes: fp16 d, then 32 int8 codes q in weight order.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ8_0
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
/// One ggml <c>block_q4_0</c>: <c>w[i] = d · (q[i] − 8)</c>, i &lt; 32, q in 0..15.
/// Bytes: fp16 d, then 16 bytes of nibbles; byte j holds weight j in its LOW nibble and weight j + 16 in
/// its HIGH nibble (unlike <see cref="Intrinsics.Formats.PackedInt4Matrix"/>, where byte j holds weights 2j and 2j + 1).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ4_0
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
/// One ggml <c>block_q4_1</c>: <c>w[i] = d · q[i] + m</c>, i &lt; 32, q in 0..15.
/// Bytes: fp16 d, fp16 m, then 16 bytes of nibbles ordered as in <see cref="BlockQ4_0"/>
/// (byte j: low nibble = q[j], high nibble = q[j + 16]).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ4_1
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 2 (m) + 16 (nibbles).</summary>
    public const int Bytes = 20;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>The block's offset m (fp16), the value of code 0.</summary>
    public Half Min;

    /// <summary>Nibbles (16): low nibble of byte j = q[j], high nibble = q[j + 16].</summary>
    public fixed byte Nibbles[Elements / 2];
}

/// <summary>
/// One ggml <c>block_q5_0</c>: <c>w[i] = d · (q[i] − 16)</c>, i &lt; 32, q in 0..31.
/// Bytes: fp16 d, a 32-bit little-endian word of fifth bits (bit i = bit 4 of q[i]), then 16 bytes of low nibbles
/// (byte j: low nibble = low 4 bits of q[j], high nibble = low 4 bits of q[j + 16]).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ5_0
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 4 (high bits) + 16 (nibbles).</summary>
    public const int Bytes = 22;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>Fifth bits (4 bytes, one little-endian uint): bit i is bit 4 of q[i].</summary>
    public fixed byte HighBits[4];

    /// <summary>Low nibbles (16): low nibble of byte j = q[j] &amp; 15, high nibble = q[j + 16] &amp; 15.</summary>
    public fixed byte Nibbles[Elements / 2];
}

/// <summary>
/// One ggml <c>block_q5_1</c>: <c>w[i] = d · q[i] + m</c>, i &lt; 32, q in 0..31; bits laid out as in <see cref="BlockQ5_0"/>.
/// Bytes: fp16 d, fp16 m, a 32-bit little-endian word of fifth bits, then 16 bytes of low nibbles.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ5_1
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 2 (m) + 4 (high bits) + 16 (nibbles).</summary>
    public const int Bytes = 24;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>The block's offset m (fp16), the value of code 0.</summary>
    public Half Min;

    /// <summary>Fifth bits (4 bytes, one little-endian uint): bit i is bit 4 of q[i].</summary>
    public fixed byte HighBits[4];

    /// <summary>Low nibbles (16): low nibble of byte j = q[j] &amp; 15, high nibble = q[j + 16] &amp; 15.</summary>
    public fixed byte Nibbles[Elements / 2];
}

/// <summary>
/// One ggml <c>block_q2_K</c>, a super-block of 256 weights in 16 sub-blocks of 16:
/// <c>w = d · (sc_s &amp; 15) · q − dmin · (sc_s &gt;&gt; 4)</c>, q in 0..3.
/// Weight e = 128h + 32j + 16k + l (h &lt; 2, j &lt; 4, k &lt; 2, l &lt; 16) takes bits 2j..2j+1 of
/// <c>Codes[32h + 16k + l]</c> and sub-block s = 8h + 2j + k.
/// Bytes: 16 scale bytes (low nibble scale, high nibble min), 64 code bytes, fp16 d, fp16 dmin.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ2_K
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 16 (scales) + 64 (codes) + 2 (d) + 2 (dmin).</summary>
    public const int Bytes = 84;

    /// <summary>Sub-block scales (16): low nibble multiplies d, high nibble multiplies dmin.</summary>
    public fixed byte Scales[16];

    /// <summary>2-bit codes (64 bytes), four weights per byte as in the type's summary.</summary>
    public fixed byte Codes[64];

    /// <summary>Super-block scale of the sub-block scales (fp16).</summary>
    public Half Scale;

    /// <summary>Super-block scale of the sub-block minimums (fp16).</summary>
    public Half Min;
}

/// <summary>
/// One ggml <c>block_q3_K</c>, a super-block of 256 weights in 16 sub-blocks of 16:
/// <c>w = d · (sc_s − 32) · (q − 4 · (1 − hbit))</c>, q in 0..3 (so the signed code is −4..3).
/// Weight e = 128h + 32j + 16k + l (h &lt; 2, j &lt; 4, k &lt; 2, l &lt; 16) takes bits 2j..2j+1 of
/// <c>Codes[32h + 16k + l]</c>, its high bit from bit 4h + j of <c>HighMask[16k + l]</c>, and sub-block s = 8h + 2j + k.
/// The 16 six-bit scales sc_s are packed in 12 bytes: low 4 bits from byte s (s &lt; 8, low nibble) or byte s − 8
/// (high nibble), high 2 bits from bits 2(s / 4)..2(s / 4)+1 of byte 8 + s % 4.
/// Bytes: 32 high-bit bytes, 64 code bytes, 12 scale bytes, fp16 d.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ3_K
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 32 (high bits) + 64 (codes) + 12 (scales) + 2 (d).</summary>
    public const int Bytes = 110;

    /// <summary>High bits (32 bytes): a set bit keeps the code as is, a clear bit subtracts 4.</summary>
    public fixed byte HighMask[32];

    /// <summary>Low 2 bits of the codes (64 bytes), four weights per byte as in the type's summary.</summary>
    public fixed byte Codes[64];

    /// <summary>Sixteen 6-bit sub-block scales packed in 12 bytes, as in the type's summary.</summary>
    public fixed byte Scales[12];

    /// <summary>Super-block scale (fp16).</summary>
    public Half Scale;
}

/// <summary>
/// One ggml <c>block_q4_K</c>, a super-block of 256 weights in 8 sub-blocks of 32:
/// <c>w = d · sc_s · q − dmin · m_s</c>, q in 0..15, sc_s and m_s 6-bit.
/// Weight e = 64p + 32k + l (p &lt; 4, k &lt; 2, l &lt; 32) is the low (k = 0) or high (k = 1) nibble of
/// <c>Codes[32p + l]</c>, in sub-block s = 2p + k.
/// The 6-bit (sc_s, m_s) pairs are packed in 12 bytes b: for s &lt; 4, sc = b[s] &amp; 63, m = b[s + 4] &amp; 63;
/// for s ≥ 4, sc = (b[s + 4] &amp; 15) | (b[s − 4] &gt;&gt; 6) &lt;&lt; 4 and m = (b[s + 4] &gt;&gt; 4) | (b[s] &gt;&gt; 6) &lt;&lt; 4.
/// Bytes: fp16 d, fp16 dmin, 12 scale bytes, 128 nibble bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ4_K
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 2 (d) + 2 (dmin) + 12 (scales) + 128 (nibbles).</summary>
    public const int Bytes = 144;

    /// <summary>Super-block scale of the sub-block scales (fp16).</summary>
    public Half Scale;

    /// <summary>Super-block scale of the sub-block minimums (fp16).</summary>
    public Half Min;

    /// <summary>Eight 6-bit scales and eight 6-bit minimums packed in 12 bytes, as in the type's summary.</summary>
    public fixed byte Scales[12];

    /// <summary>Nibbles (128 bytes), as in the type's summary.</summary>
    public fixed byte Nibbles[128];
}

/// <summary>
/// One ggml <c>block_q5_K</c>: <see cref="BlockQ4_K"/> with a fifth bit, <c>w = d · sc_s · q − dmin · m_s</c>, q in 0..31.
/// Weight e = 64p + 32k + l takes its low 4 bits as in <see cref="BlockQ4_K"/> and bit 4 from bit 2p + k of <c>HighBits[l]</c>.
/// Bytes: fp16 d, fp16 dmin, 12 scale bytes (packed as in <see cref="BlockQ4_K"/>), 32 high-bit bytes, 128 nibble bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ5_K
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 2 (d) + 2 (dmin) + 12 (scales) + 32 (high bits) + 128 (nibbles).</summary>
    public const int Bytes = 176;

    /// <summary>Super-block scale of the sub-block scales (fp16).</summary>
    public Half Scale;

    /// <summary>Super-block scale of the sub-block minimums (fp16).</summary>
    public Half Min;

    /// <summary>Eight 6-bit scales and eight 6-bit minimums packed in 12 bytes, as in <see cref="BlockQ4_K"/>.</summary>
    public fixed byte Scales[12];

    /// <summary>Fifth bits (32 bytes): bit 2p + k of byte l belongs to weight 64p + 32k + l.</summary>
    public fixed byte HighBits[32];

    /// <summary>Low nibbles (128 bytes), as in <see cref="BlockQ4_K"/>.</summary>
    public fixed byte Nibbles[128];
}

/// <summary>
/// One ggml <c>block_q6_K</c>, a super-block of 256 weights in 16 sub-blocks of 16:
/// <c>w = d · sc_s · (q − 32)</c>, q in 0..63, sc_s a signed byte.
/// Weight e = 128h + 32k + l (h &lt; 2, k &lt; 4, l &lt; 32) takes its low 4 bits from the low (k &lt; 2) or high (k ≥ 2)
/// nibble of <c>Low[64h + 32(k % 2) + l]</c>, its high 2 bits from bits 2k..2k+1 of <c>High[32h + l]</c>, and
/// sub-block s = 8h + 2k + l / 16.
/// Bytes: 128 low-nibble bytes, 64 high-bit bytes, 16 signed scales, fp16 d.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ6_K
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 128 (low 4 bits) + 64 (high 2 bits) + 16 (scales) + 2 (d).</summary>
    public const int Bytes = 210;

    /// <summary>Low 4 bits of the codes (128 bytes), as in the type's summary.</summary>
    public fixed byte Low[128];

    /// <summary>High 2 bits of the codes (64 bytes), four weights per byte as in the type's summary.</summary>
    public fixed byte High[64];

    /// <summary>Sub-block scales (16, signed).</summary>
    public fixed sbyte Scales[16];

    /// <summary>Super-block scale (fp16).</summary>
    public Half Scale;
}

/// <summary>
/// One ggml <c>block_iq4_nl</c>: <c>w[i] = d · K[q[i]]</c>, i &lt; 32, with the fixed non-linear 16-entry codebook
/// <see cref="GgmlBlockCodec.Iq4Codebook"/> K.
/// Bytes: fp16 d, then 16 bytes of nibbles; byte j holds q[j] in its low nibble and q[j + 16] in its high nibble.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockIQ4_NL
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block: 2 (d) + 16 (nibbles).</summary>
    public const int Bytes = 18;

    /// <summary>The block's scale d (fp16).</summary>
    public Half Scale;

    /// <summary>Codebook indices (16 bytes): low nibble of byte j = q[j], high nibble = q[j + 16].</summary>
    public fixed byte Nibbles[Elements / 2];
}

/// <summary>
/// One ggml <c>block_iq4_xs</c>, a super-block of 256 weights in 8 sub-blocks of 32:
/// <c>w = d · (ls_s − 32) · K[q]</c> with the codebook K of <see cref="BlockIQ4_NL"/> and 6-bit sub-block scales ls_s.
/// ls_s takes its low 4 bits from nibble s % 2 of <c>ScalesLow[s / 2]</c> (low nibble for even s) and its high 2 bits
/// from bits 2s..2s+1 of <c>ScalesHigh</c>. Sub-block s holds weights 32s..32s+31, nibbles as in <see cref="BlockIQ4_NL"/>
/// over bytes 16s..16s+15 (byte 16s + j: low nibble = weight 32s + j, high nibble = weight 32s + j + 16).
/// Bytes: fp16 d, 16-bit high scale bits, 4 low-scale bytes, 128 nibble bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockIQ4_XS
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 256;

    /// <summary>Bytes per block: 2 (d) + 2 (high scale bits) + 4 (low scale bits) + 128 (nibbles).</summary>
    public const int Bytes = 136;

    /// <summary>Super-block scale (fp16).</summary>
    public Half Scale;

    /// <summary>High 2 bits of the eight sub-block scales: bits 2s..2s+1 for sub-block s.</summary>
    public ushort ScalesHigh;

    /// <summary>Low 4 bits of the eight sub-block scales (4 bytes): sub-block s in nibble s % 2 of byte s / 2.</summary>
    public fixed byte ScalesLow[4];

    /// <summary>Codebook indices (128 bytes), as in the type's summary.</summary>
    public fixed byte Nibbles[128];
}
