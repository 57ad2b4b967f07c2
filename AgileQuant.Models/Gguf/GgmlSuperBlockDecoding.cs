using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// How the rows of a ggml block type become <see cref="SuperBlockInt4Matrix"/> rows without re-quantizing: the
/// <see cref="SuperBlockInt4Scheme"/> the type's math fits, and a decoder that copies each block's codes, integer
/// sub-block scales and minimums and fp16 super-block scales into it (the row of <see cref="GgmlTypeTraits"/> that loads
/// as <see cref="GgmlLoadFormat.SuperBlockInt4"/> names one). Layouts: ggml-org/llama.cpp ggml/src/ggml-common.h and
/// <c>dequantize_row_*</c> in ggml/src/ggml-quants.c (read at commit 01243c5), as in <see cref="GgmlBlockCodec"/>.
/// Partial: a new type's decoding may live in the type's own file (docs/architecture.md, "How to add a weight type").
/// </summary>
internal sealed unsafe partial class GgmlSuperBlockDecoding
{
    /// <summary>Fills <paramref name="destination"/> (one row) from the ggml blocks of that row.</summary>
    public delegate void RowDecoder(ReadOnlySpan<byte> row, SuperBlockRow destination);

    private readonly RowDecoder _decode;

    private GgmlSuperBlockDecoding(SuperBlockInt4Scheme scheme, RowDecoder decode)
    {
        Scheme = scheme;
        _decode = decode;
    }

    /// <summary>The scheme the type's values fit exactly.</summary>
    public SuperBlockInt4Scheme Scheme { get; }

    /// <summary>Decodes one row of blocks (whole blocks, finite fp16 fields: the converter checked both).</summary>
    public void DecodeRow(ReadOnlySpan<byte> row, SuperBlockRow destination) => _decode(row, destination);

    /// <summary>Q4_1: <c>w = q · d + m</c> per block of 32 = super-block and sub-block with sc = 1, m = 1, dmin = −m (so <c>d·q − (−m)</c>, the same float).</summary>
    public static GgmlSuperBlockDecoding Q4_1 { get; } = new(new SuperBlockInt4Scheme(32, 32, hasMins: true), (row, to) =>
    {
        ReadOnlySpan<BlockQ4_1> blocks = MemoryMarshal.Cast<byte, BlockQ4_1>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            GgufTensorConverter.RepackQ4_0Block(MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(4, 16), to.Packed.Slice(16 * b, 16));
            to.SuperScales[b] = blocks[b].Scale;
            to.SuperMins[b] = -blocks[b].Min;
            to.SubScales[b] = 1;
            to.SubMins[b] = 1;
        }
    });

    /// <summary>IQ4_NL: <c>w = d · K[q]</c> per block of 32 = super-block and sub-block with sc = 1.</summary>
    public static GgmlSuperBlockDecoding IQ4_NL { get; } = new(new SuperBlockInt4Scheme(32, 32, codebook: GgmlBlockCodec.Iq4Codebook), (row, to) =>
    {
        ReadOnlySpan<BlockIQ4_NL> blocks = MemoryMarshal.Cast<byte, BlockIQ4_NL>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            GgufTensorConverter.RepackQ4_0Block(MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(2, 16), to.Packed.Slice(16 * b, 16));
            to.SuperScales[b] = blocks[b].Scale;
            to.SubScales[b] = 1;
        }
    });

    /// <summary>IQ4_XS: <c>w = (d · (ls − 32)) · K[q]</c>, sub-blocks of 32 in super-blocks of 256.</summary>
    public static GgmlSuperBlockDecoding IQ4_XS { get; } = new(new SuperBlockInt4Scheme(32, 256, codebook: GgmlBlockCodec.Iq4Codebook), (row, to) =>
    {
        ReadOnlySpan<BlockIQ4_XS> blocks = MemoryMarshal.Cast<byte, BlockIQ4_XS>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockIQ4_XS block = ref blocks[b];
            ReadOnlySpan<byte> nibbles = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(8, 128);
            to.SuperScales[b] = block.Scale;
            for (int s = 0; s < 8; s++)
            {
                GgufTensorConverter.RepackQ4_0Block(nibbles.Slice(16 * s, 16), to.Packed.Slice(128 * b + 16 * s, 16));
                to.SubScales[8 * b + s] = (sbyte)(((block.ScalesLow[s / 2] >> 4 * (s % 2) & 0xF) | (block.ScalesHigh >> 2 * s & 3) << 4) - 32);
            }
        }
    });

    /// <summary>Q4_K: <c>w = (d · sc) · q − dmin · m</c>, 6-bit sc and m per sub-block of 32, super-blocks of 256.</summary>
    public static GgmlSuperBlockDecoding Q4_K { get; } = new(new SuperBlockInt4Scheme(32, 256, hasMins: true), (row, to) =>
    {
        ReadOnlySpan<BlockQ4_K> blocks = MemoryMarshal.Cast<byte, BlockQ4_K>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ4_K block = ref blocks[b];
            ReadOnlySpan<byte> packedScales = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(4, 12);
            ReadOnlySpan<byte> nibbles = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(16, 128);
            to.SuperScales[b] = block.Scale;
            to.SuperMins[b] = block.Min;
            for (int p = 0; p < 4; p++)
            {
                // columns 64p + l: low nibble of byte 32p + l (l < 32), then the high nibbles
                Vector128<byte> q0 = Vector128.Create(nibbles.Slice(32 * p, 16)), q1 = Vector128.Create(nibbles.Slice(32 * p + 16, 16));
                Span<byte> target = to.Packed.Slice(128 * b + 32 * p, 32);
                PairAdjacent(q0 & Vector128.Create((byte)0x0F)).CopyTo(target);
                PairAdjacent(q1 & Vector128.Create((byte)0x0F)).CopyTo(target[8..]);
                PairAdjacent(Vector128.ShiftRightLogical(q0, 4)).CopyTo(target[16..]);
                PairAdjacent(Vector128.ShiftRightLogical(q1, 4)).CopyTo(target[24..]);
            }
            for (int s = 0; s < 8; s++)
            {
                (int sc, int m) = GgmlBlockCodec.KQuantScaleMin(packedScales, s);
                to.SubScales[8 * b + s] = (sbyte)sc;
                to.SubMins[8 * b + s] = (byte)m;
            }
        }
    });

    /// <summary>Q2_K: <c>w = (d · sc) · q − dmin · m</c>, q 0..3, 4-bit sc and m per sub-block of 16, super-blocks of 256.</summary>
    public static GgmlSuperBlockDecoding Q2_K { get; } = new(new SuperBlockInt4Scheme(16, 256, hasMins: true), (row, to) =>
    {
        ReadOnlySpan<BlockQ2_K> blocks = MemoryMarshal.Cast<byte, BlockQ2_K>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ2_K block = ref blocks[b];
            ReadOnlySpan<byte> codes = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(16, 64);
            to.SuperScales[b] = block.Scale;
            to.SuperMins[b] = block.Min;
            for (int s = 0; s < 16; s++)
            {
                // sub-block s = 8h + 2j + k: bits 2j..2j+1 of codes[32h + 16k ..+16]
                int h = s / 8, j = s % 8 / 2, k = s % 2;
                Vector128<byte> q = Vector128.ShiftRightLogical(Vector128.Create(codes.Slice(32 * h + 16 * k, 16)), 2 * j) & Vector128.Create((byte)3);
                PairAdjacent(q).CopyTo(to.Packed.Slice(128 * b + 8 * s, 8));
                to.SubScales[16 * b + s] = (sbyte)(block.Scales[s] & 0xF);
                to.SubMins[16 * b + s] = (byte)(block.Scales[s] >> 4);
            }
        }
    });

    /// <summary>Q3_K: <c>w = (d · (sc − 32)) · (q − 4)</c> with the code q + 4 = low 2 bits | high bit · 4 (0..7), sub-blocks of 16.</summary>
    public static GgmlSuperBlockDecoding Q3_K { get; } = new(new SuperBlockInt4Scheme(16, 256, codeOffset: 4), (row, to) =>
    {
        ReadOnlySpan<BlockQ3_K> blocks = MemoryMarshal.Cast<byte, BlockQ3_K>(row);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref readonly BlockQ3_K block = ref blocks[b];
            ReadOnlySpan<byte> highMask = MemoryMarshal.AsBytes(blocks.Slice(b, 1))[..32];
            ReadOnlySpan<byte> codes = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(32, 64);
            to.SuperScales[b] = block.Scale;
            for (int s = 0; s < 16; s++)
            {
                // sub-block s = 8h + 2j + k: bits 2j..2j+1 of codes[32h + 16k ..+16], high bit 4h + j of highMask[16k ..+16]
                int h = s / 8, j = s % 8 / 2, k = s % 2;
                Vector128<byte> low = Vector128.ShiftRightLogical(Vector128.Create(codes.Slice(32 * h + 16 * k, 16)), 2 * j) & Vector128.Create((byte)3);
                Vector128<byte> high = Vector128.ShiftRightLogical(Vector128.Create(highMask.Slice(16 * k, 16)), 4 * h + j) & Vector128<byte>.One;
                PairAdjacent(low | Vector128.ShiftLeft(high, 2)).CopyTo(to.Packed.Slice(128 * b + 8 * s, 8));
                int lowScale = s < 8 ? block.Scales[s] & 0xF : block.Scales[s - 8] >> 4;
                to.SubScales[16 * b + s] = (sbyte)((lowScale | (block.Scales[8 + s % 4] >> 2 * (s / 4) & 3) << 4) - 32);
            }
        }
    });

    // The 16 nibble values v (one per byte) → 8 bytes v[2m] | v[2m + 1] << 4: the row-major order of SuperBlockInt4Matrix.Create.
    private static Vector64<byte> PairAdjacent(Vector128<byte> v)
    {
        Vector128<byte> evens = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
        return (Vector128.Shuffle(v, evens) | Vector128.ShiftLeft(Vector128.Shuffle(v, evens + Vector128<byte>.One), 4)).GetLower();
    }
}

/// <summary>
/// One row of a <see cref="SuperBlockInt4Matrix"/> being decoded: codes (Cols / 2, column c in the low nibble of byte c / 2
/// when even), d and dmin (super-blocks), sc and m (sub-blocks); the minimums are empty for schemes without them.
/// </summary>
internal readonly ref struct SuperBlockRow(Span<byte> packed, Span<Half> superScales, Span<Half> superMins, Span<sbyte> subScales, Span<byte> subMins)
{
    /// <summary>Codes, two per byte.</summary>
    public Span<byte> Packed { get; } = packed;

    /// <summary>d per super-block.</summary>
    public Span<Half> SuperScales { get; } = superScales;

    /// <summary>dmin per super-block.</summary>
    public Span<Half> SuperMins { get; } = superMins;

    /// <summary>sc per sub-block.</summary>
    public Span<sbyte> SubScales { get; } = subScales;

    /// <summary>m per sub-block.</summary>
    public Span<byte> SubMins { get; } = subMins;
}
