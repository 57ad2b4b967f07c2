using System.Runtime.InteropServices;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// The GGUF block types that load as <see cref="GroupedInt8Matrix"/> (<see cref="GgmlLoadFormat.GroupedInt8"/>): each
/// row's blocks unpacked into int8 codes and the group factors the blocks hold, so that <c>Scale · Code − Offset</c>
/// computes the very float of ggml's dequantizer (bit layouts on the block structs, <see cref="GgmlBlockCodec"/>).
/// </summary>
internal static unsafe class GgmlGroupedInt8Codec
{
    /// <summary>How a type's rows become groups: columns per group, groups per super-block (1: a float per group), offsets.</summary>
    /// <param name="GroupSize">Columns per group: 32, or 16 for Q6_K.</param>
    /// <param name="GroupsPerSuperBlock">Groups under one float super-scale; 1 when every group has its own float (d).</param>
    /// <param name="HasOffsets">Whether the groups have offsets (Q5_1's −m, Q5_K's dmin · m).</param>
    public readonly record struct GroupLayout(int GroupSize, int GroupsPerSuperBlock, bool HasOffsets)
    {
        /// <summary>Whether the scales are a float per super-block times an int8 per group.</summary>
        public bool HasSuperBlocks => GroupsPerSuperBlock > 1;
    }

    /// <summary>The layout of <paramref name="type"/>, one of the types whose load format is <see cref="GgmlLoadFormat.GroupedInt8"/>.</summary>
    public static GroupLayout LayoutOf(GgmlType type) => type switch
    {
        GgmlType.Q8_0 or GgmlType.Q5_0 => new GroupLayout(32, 1, false),
        GgmlType.Q5_1 => new GroupLayout(32, 1, true),
        GgmlType.Q5_K => new GroupLayout(32, 8, true),
        GgmlType.Q6_K => new GroupLayout(16, 16, false),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, $"Expected a type that loads as grouped int8 (Q8_0, Q5_0, Q5_1, Q5_K or Q6_K), found {type}."),
    };

    /// <summary>
    /// Unpacks one row of <paramref name="type"/> blocks: <paramref name="codes"/> (cols), and per group (or, with
    /// super-blocks, per super-block) <paramref name="scales"/> / <paramref name="offsets"/>, with the int8
    /// <paramref name="subScales"/> / <paramref name="subOffsets"/> per group; spans a layout does not use are empty.
    /// </summary>
    public static void DecodeRow(GgmlType type, ReadOnlySpan<byte> row, Span<sbyte> codes, Span<float> scales, Span<sbyte> subScales,
        Span<float> offsets, Span<sbyte> subOffsets)
    {
        switch (type)
        {
            case GgmlType.Q8_0:
                // y = d · q
                ReadOnlySpan<BlockQ8_0> q8 = MemoryMarshal.Cast<byte, BlockQ8_0>(row);
                for (int b = 0; b < q8.Length; b++)
                {
                    scales[b] = (float)q8[b].Scale;
                    MemoryMarshal.Cast<byte, sbyte>(MemoryMarshal.AsBytes(q8.Slice(b, 1)).Slice(2, BlockQ8_0.Elements)).CopyTo(codes.Slice(b * BlockQ8_0.Elements));
                }
                break;
            case GgmlType.Q5_0:
                // y = d · (q − 16): code q − 16 in −16..15
                ReadOnlySpan<BlockQ5_0> q50 = MemoryMarshal.Cast<byte, BlockQ5_0>(row);
                for (int b = 0; b < q50.Length; b++)
                {
                    scales[b] = (float)q50[b].Scale;
                    FiveBitCodes(MemoryMarshal.AsBytes(q50.Slice(b, 1)).Slice(6, 16), GgmlBlockCodec.HighBitWord(in q50[b].HighBits[0]), -16, codes.Slice(b * 32, 32));
                }
                break;
            case GgmlType.Q5_1:
                // y = d · q + m = d · q − (−m): code q in 0..31, offset −m
                ReadOnlySpan<BlockQ5_1> q51 = MemoryMarshal.Cast<byte, BlockQ5_1>(row);
                for (int b = 0; b < q51.Length; b++)
                {
                    scales[b] = (float)q51[b].Scale;
                    offsets[b] = -(float)q51[b].Min;
                    FiveBitCodes(MemoryMarshal.AsBytes(q51.Slice(b, 1)).Slice(8, 16), GgmlBlockCodec.HighBitWord(in q51[b].HighBits[0]), 0, codes.Slice(b * 32, 32));
                }
                break;
            case GgmlType.Q5_K:
                // sub-block s of 32: y = (d · sc_s) · q − dmin · m_s, q = nibble | high bit << 4
                ReadOnlySpan<BlockQ5_K> q5k = MemoryMarshal.Cast<byte, BlockQ5_K>(row);
                for (int b = 0; b < q5k.Length; b++)
                {
                    ref readonly BlockQ5_K block = ref q5k[b];
                    scales[b] = (float)block.Scale;
                    offsets[b] = (float)block.Min;
                    ReadOnlySpan<byte> packedScales = MemoryMarshal.CreateReadOnlySpan(in block.Scales[0], 12);
                    for (int s = 0; s < 8; s++)
                    {
                        (int sc, int m) = GgmlBlockCodec.KQuantScaleMin(packedScales, s);
                        subScales[8 * b + s] = (sbyte)sc;
                        subOffsets[8 * b + s] = (sbyte)m;
                        int p = s / 2, k = s % 2;
                        for (int l = 0; l < 32; l++)
                            codes[256 * b + 32 * s + l] = (sbyte)((block.Nibbles[32 * p + l] >> 4 * k & 0xF) | (block.HighBits[l] >> s & 1) << 4);
                    }
                }
                break;
            case GgmlType.Q6_K:
                // sub-block of 16: y = (d · sc) · (q − 32), q = low nibble | 2 high bits << 4
                ReadOnlySpan<BlockQ6_K> q6k = MemoryMarshal.Cast<byte, BlockQ6_K>(row);
                for (int b = 0; b < q6k.Length; b++)
                {
                    ref readonly BlockQ6_K block = ref q6k[b];
                    scales[b] = (float)block.Scale;
                    for (int j = 0; j < 16; j++) subScales[16 * b + j] = block.Scales[j];
                    for (int h = 0; h < 2; h++)
                        for (int k = 0; k < 4; k++)
                            for (int l = 0; l < 32; l++)
                            {
                                int low = block.Low[64 * h + 32 * (k % 2) + l] >> 4 * (k / 2) & 0xF;
                                codes[256 * b + 128 * h + 32 * k + l] = (sbyte)((low | (block.High[32 * h + l] >> 2 * k & 3) << 4) - 32);
                            }
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, $"Expected a type that loads as grouped int8 (Q8_0, Q5_0, Q5_1, Q5_K or Q6_K), found {type}.");
        }
    }

    // Q5_0/Q5_1 block: code j = (nibble j | bit j of the high word << 4) + bias, nibbles ordered as in Q4_0 (byte j: j and j + 16).
    private static void FiveBitCodes(ReadOnlySpan<byte> nibbles, uint high, int bias, Span<sbyte> codes)
    {
        for (int j = 0; j < 16; j++)
        {
            codes[j] = (sbyte)((nibbles[j] & 0xF | GgmlBlockCodec.FifthBit(high, j)) + bias);
            codes[j + 16] = (sbyte)((nibbles[j] >> 4 | GgmlBlockCodec.FifthBit(high, j + 16)) + bias);
        }
    }
}
