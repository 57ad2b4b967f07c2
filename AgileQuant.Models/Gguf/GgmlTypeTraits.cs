using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>What a GGUF weight matrix of a <see cref="GgmlType"/> becomes when a model is loaded.</summary>
public enum GgmlLoadFormat
{
    /// <summary>
    /// An <see cref="Fp32Matrix"/> holding the values of the type's reference dequantizer. For F32/F16/BF16 that is the
    /// tensor itself; for the quantized types without an integer format of their own it is an intermediate step (correct
    /// values, four bytes per weight).
    /// </summary>
    Fp32,

    /// <summary>A symmetric <see cref="PackedInt4Matrix"/> with groups of 32: Q4_0's nibbles and fp16 scales carried over exactly.</summary>
    PackedInt4,

    /// <summary>
    /// A <see cref="GroupedInt8Matrix"/> holding the file's values exactly: int8 codes with the blocks' scales (and
    /// minimums) per group: Q8_0 <c>d · q</c>, Q5_0 <c>d · (q − 16)</c>, Q5_1 <c>d · q + m</c> per 32 columns; Q5_K
    /// <c>d · sc · q − dmin · m</c> per 32 and Q6_K <c>d · sc · (q − 32)</c> per 16, their 6/8-bit sub-scales kept as
    /// int8 under the super-block's float (docs/kernels.md, "Grouped 8-bit weights").
    /// </summary>
    GroupedInt8,
    /// <summary>
    /// A <see cref="SuperBlockInt4Matrix"/>: the 4-bit (or narrower) codes, integer sub-block scales and minimums and fp16
    /// super-block scales carried over exactly (Q4_1, Q2_K, Q3_K, Q4_K, IQ4_NL, IQ4_XS), as the row's
    /// <see cref="GgmlTypeTraits.SuperBlockDecoding"/> decodes them.
    /// </summary>
    SuperBlockInt4,
}

/// <summary>
/// One row of the GGUF weight-type table, modelled on ggml's <c>type_traits</c> (ggml-org/llama.cpp ggml/src/ggml.c):
/// block geometry, whether this library reads the type, its scalar reference dequantizer and the format it becomes at
/// load. Every reader and writer of GGUF tensors asks this table; a type without a row here, or whose row says it is not
/// readable, is refused, never decoded as another. Adding a weight type: docs/architecture.md, "How to add a weight type".
/// </summary>
public sealed class GgmlTypeTraits
{
    private const int QK_K = 256; // elements per k-quant / i-quant super-block

    private delegate void RowDequantizer(ReadOnlySpan<byte> row, Span<float> y);

    private delegate void BlockDequantizer<TBlock>(ReadOnlySpan<TBlock> blocks, Span<float> y) where TBlock : unmanaged;

    private readonly RowDequantizer? _dequantize;
    private readonly int[] _scaleOffsets;

    private GgmlTypeTraits(GgmlType type, int blockElements, int blockBytes, GgmlLoadFormat? loadFormat, int[] scaleOffsets, RowDequantizer? dequantize,
        GgmlSuperBlockDecoding? superBlockDecoding = null)
    {
        SuperBlockDecoding = superBlockDecoding;
        Type = type;
        BlockElements = blockElements;
        BlockBytes = blockBytes;
        LoadFormat = loadFormat;
        _scaleOffsets = scaleOffsets;
        _dequantize = dequantize;
    }

    /// <summary>The type this row describes.</summary>
    public GgmlType Type { get; }

    /// <summary>Weights per block (1 for the plain element types).</summary>
    public int BlockElements { get; }

    /// <summary>Bytes per block.</summary>
    public int BlockBytes { get; }

    /// <summary>Whether this library reads tensors of this type (it has a reference dequantizer and a <see cref="LoadFormat"/>).</summary>
    public bool IsReadable => _dequantize is not null;

    /// <summary>What a weight matrix of this type becomes at load; null when the type is not readable.</summary>
    public GgmlLoadFormat? LoadFormat { get; }

    /// <summary>Whether weight matrices of this type load into a packed integer format (not dequantized to FP32).</summary>
    public bool LoadsPacked => LoadFormat is not (null or GgmlLoadFormat.Fp32);

    /// <summary>For <see cref="GgmlLoadFormat.SuperBlockInt4"/>: the scheme and the decoder of the type's blocks; else null.</summary>
    internal GgmlSuperBlockDecoding? SuperBlockDecoding { get; }

    /// <summary>For <see cref="GgmlLoadFormat.SuperBlockInt4"/>: how the type's codes and scales are read (e.g. Q4_K: sub-blocks of 32 with 6-bit scales and minimums in super-blocks of 256); else null.</summary>
    public SuperBlockInt4Scheme? SuperBlockScheme => SuperBlockDecoding?.Scheme;

    /// <summary>Bytes of a row of <paramref name="elements"/> weights: elements / <see cref="BlockElements"/> · <see cref="BlockBytes"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="elements"/> is negative or not whole blocks.</exception>
    public long RowBytes(long elements)
    {
        if (elements < 0 || elements % BlockElements != 0)
            throw new ArgumentException($"Expected a whole number of {Type} blocks of {BlockElements}, found {elements} elements.", nameof(elements));
        return elements / BlockElements * BlockBytes;
    }

    /// <summary>
    /// The reference dequantizer: <paramref name="y"/> (n) = the values of the n / <see cref="BlockElements"/> blocks in
    /// <paramref name="row"/>, bit-identical to ggml's <c>dequantize_row_*</c> (the math of each type is on its block struct).
    /// </summary>
    /// <exception cref="NotSupportedException">The type is not readable.</exception>
    /// <exception cref="ArgumentException"><paramref name="row"/> is not the bytes of <paramref name="y"/>'s length.</exception>
    public void DequantizeRow(ReadOnlySpan<byte> row, Span<float> y)
    {
        if (_dequantize is null) throw new NotSupportedException($"ggml type {Type} has no reference dequantizer in this library.");
        if (y.Length % BlockElements != 0 || row.Length != (long)y.Length / BlockElements * BlockBytes)
            throw new ArgumentException($"Expected {Type} blocks of {BlockElements} elements in {BlockBytes} bytes each, found {row.Length} bytes for {y.Length} elements.", nameof(row));
        _dequantize(row, y);
    }

    /// <summary>
    /// The first block of <paramref name="row"/> whose fp16 scale or minimum is NaN or infinite, with that value; -1 when
    /// every one is finite (always for types without block scales).
    /// </summary>
    internal int FirstNonFiniteScale(ReadOnlySpan<byte> row, out Half value)
    {
        for (int b = 0; _scaleOffsets.Length > 0 && b < row.Length / BlockBytes; b++)
            foreach (int offset in _scaleOffsets)
            {
                value = MemoryMarshal.Read<Half>(row.Slice(b * BlockBytes + offset, 2));
                if (!Half.IsFinite(value)) return b;
            }
        value = default;
        return -1;
    }

    /// <summary>The row of <paramref name="type"/>; null for a code this library does not know.</summary>
    public static GgmlTypeTraits? Find(GgmlType type) => (uint)type < (uint)s_byCode.Length ? s_byCode[(int)type] : null;

    /// <summary>Every type this library knows, readable or not, in code order.</summary>
    public static IReadOnlyList<GgmlTypeTraits> All => s_table;

    // The table. Scale offsets: byte offsets of each block's fp16 scale fields (GgmlTypeTraitsTests checks them against
    // the block structs). Block sizes of the unread types: gguf-py GGML_QUANT_SIZES (ggml-org/llama.cpp gguf-py/gguf/constants.py).
    private static readonly GgmlTypeTraits[] s_table =
    [
        Read(GgmlType.F32, 1, sizeof(float), GgmlLoadFormat.Fp32, [], (x, y) => MemoryMarshal.Cast<byte, float>(x).CopyTo(y)),
        Read(GgmlType.F16, 1, 2, GgmlLoadFormat.Fp32, [], (x, y) => TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(x), y)),
        Read(GgmlType.Q4_0, BlockQ4_0.Elements, BlockQ4_0.Bytes, GgmlLoadFormat.PackedInt4, [0], Blocks<BlockQ4_0>(GgmlBlockCodec.DequantizeRowQ4_0)),
        SuperBlocks(GgmlType.Q4_1, BlockQ4_1.Elements, BlockQ4_1.Bytes, [0, 2], Blocks<BlockQ4_1>(GgmlBlockCodec.DequantizeRowQ4_1), GgmlSuperBlockDecoding.Q4_1),
        Read(GgmlType.Q5_0, BlockQ5_0.Elements, BlockQ5_0.Bytes, GgmlLoadFormat.GroupedInt8, [0], Blocks<BlockQ5_0>(GgmlBlockCodec.DequantizeRowQ5_0)),
        Read(GgmlType.Q5_1, BlockQ5_1.Elements, BlockQ5_1.Bytes, GgmlLoadFormat.GroupedInt8, [0, 2], Blocks<BlockQ5_1>(GgmlBlockCodec.DequantizeRowQ5_1)),
        Read(GgmlType.Q8_0, BlockQ8_0.Elements, BlockQ8_0.Bytes, GgmlLoadFormat.GroupedInt8, [0], Blocks<BlockQ8_0>(GgmlBlockCodec.DequantizeRowQ8_0)),
        Layout(GgmlType.Q8_1, 32, 2 + 2 + 32),
        SuperBlocks(GgmlType.Q2_K, BlockQ2_K.Elements, BlockQ2_K.Bytes, [80, 82], Blocks<BlockQ2_K>(GgmlBlockCodec.DequantizeRowQ2_K), GgmlSuperBlockDecoding.Q2_K),
        SuperBlocks(GgmlType.Q3_K, BlockQ3_K.Elements, BlockQ3_K.Bytes, [108], Blocks<BlockQ3_K>(GgmlBlockCodec.DequantizeRowQ3_K), GgmlSuperBlockDecoding.Q3_K),
        SuperBlocks(GgmlType.Q4_K, BlockQ4_K.Elements, BlockQ4_K.Bytes, [0, 2], Blocks<BlockQ4_K>(GgmlBlockCodec.DequantizeRowQ4_K), GgmlSuperBlockDecoding.Q4_K),
        Read(GgmlType.Q5_K, BlockQ5_K.Elements, BlockQ5_K.Bytes, GgmlLoadFormat.GroupedInt8, [0, 2], Blocks<BlockQ5_K>(GgmlBlockCodec.DequantizeRowQ5_K)),
        Read(GgmlType.Q6_K, BlockQ6_K.Elements, BlockQ6_K.Bytes, GgmlLoadFormat.GroupedInt8, [208], Blocks<BlockQ6_K>(GgmlBlockCodec.DequantizeRowQ6_K)),
        Layout(GgmlType.Q8_K, QK_K, 4 + QK_K + QK_K / 8),
        Layout(GgmlType.IQ2_XXS, QK_K, 2 + QK_K / 4),
        Layout(GgmlType.IQ2_XS, QK_K, 2 + QK_K / 4 + QK_K / 32),
        Layout(GgmlType.IQ3_XXS, QK_K, 2 + QK_K / 4 + QK_K / 8),
        Layout(GgmlType.IQ1_S, QK_K, 2 + QK_K / 8 + QK_K / 16),
        SuperBlocks(GgmlType.IQ4_NL, BlockIQ4_NL.Elements, BlockIQ4_NL.Bytes, [0], Blocks<BlockIQ4_NL>(GgmlBlockCodec.DequantizeRowIQ4_NL), GgmlSuperBlockDecoding.IQ4_NL),
        Layout(GgmlType.IQ3_S, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
        Layout(GgmlType.IQ2_S, QK_K, 2 + QK_K / 4 + QK_K / 16),
        SuperBlocks(GgmlType.IQ4_XS, BlockIQ4_XS.Elements, BlockIQ4_XS.Bytes, [0], Blocks<BlockIQ4_XS>(GgmlBlockCodec.DequantizeRowIQ4_XS), GgmlSuperBlockDecoding.IQ4_XS),
        Layout(GgmlType.I8, 1, 1),
        Layout(GgmlType.I16, 1, 2),
        Layout(GgmlType.I32, 1, 4),
        Layout(GgmlType.I64, 1, 8),
        Layout(GgmlType.F64, 1, 8),
        Layout(GgmlType.IQ1_M, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
        Read(GgmlType.BF16, 1, 2, GgmlLoadFormat.Fp32, [], DequantizeRowBF16),
        Layout(GgmlType.TQ1_0, QK_K, 2 + 4 * 13),
        Layout(GgmlType.TQ2_0, QK_K, 2 + 64),
        Layout(GgmlType.MXFP4, 32, 1 + 16),
    ];

    private static readonly GgmlTypeTraits?[] s_byCode = IndexByCode(s_table);

    // Declared after s_table: static initializers run in text order.
    /// <summary>The readable types as a list for messages: "F32, F16, …, IQ4_NL or IQ4_XS".</summary>
    public static string ReadableTypeNames { get; } = JoinNames(s_table.Where(t => t.IsReadable).Select(t => t.Type.ToString()).ToArray());

    private static GgmlTypeTraits Read(GgmlType type, int elements, int bytes, GgmlLoadFormat format, int[] scaleOffsets, RowDequantizer dequantize) =>
        new(type, elements, bytes, format, scaleOffsets, dequantize);

    private static GgmlTypeTraits SuperBlocks(GgmlType type, int elements, int bytes, int[] scaleOffsets, RowDequantizer dequantize, GgmlSuperBlockDecoding decoding) =>
        new(type, elements, bytes, GgmlLoadFormat.SuperBlockInt4, scaleOffsets, dequantize, decoding);

    private static GgmlTypeTraits Layout(GgmlType type, int elements, int bytes) => new(type, elements, bytes, null, [], null);

    private static RowDequantizer Blocks<TBlock>(BlockDequantizer<TBlock> dequantize) where TBlock : unmanaged =>
        (row, y) => dequantize(MemoryMarshal.Cast<byte, TBlock>(row), y);

    // bfloat16 is the high half of a float32.
    private static void DequantizeRowBF16(ReadOnlySpan<byte> row, Span<float> y)
    {
        ReadOnlySpan<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(row);
        for (int i = 0; i < y.Length; i++) y[i] = BitConverter.Int32BitsToSingle(bf16[i] << 16);
    }

    private static GgmlTypeTraits?[] IndexByCode(GgmlTypeTraits[] table)
    {
        var byCode = new GgmlTypeTraits?[(int)table.Max(t => t.Type) + 1];
        foreach (GgmlTypeTraits traits in table) byCode[(int)traits.Type] = traits;
        return byCode;
    }

    private static string JoinNames(string[] names) => string.Join(", ", names[..^1]) + " or " + names[^1];
}
