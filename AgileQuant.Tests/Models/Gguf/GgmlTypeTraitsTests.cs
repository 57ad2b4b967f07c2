using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// The GGUF weight-type table and its reference dequantizers against llama.cpp's own ggml (libggml-base from
/// LLamaSharp.Backend.Cpu): block geometry and names for every type, bit-identical dequantization for every readable
/// type on blocks made by ggml's quantizer and on hand-made edge blocks, and the size and field offsets of every block struct.
/// </summary>
public class GgmlTypeTraitsTests
{
    /// <summary>The types llama.cpp's quantization presets write for dense models (issue 18's list).</summary>
    internal static readonly GgmlType[] ReadableTypes =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
    ];

    /// <summary>The types that load as <see cref="GgmlLoadFormat.SuperBlockInt4"/> (4-bit codes or fewer under two levels of scales).</summary>
    internal static readonly GgmlType[] SuperBlockInt4Types = [GgmlType.Q4_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS];

    /// <summary>The readable types with blocks (and fp16 block scales).</summary>
    internal static GgmlType[] BlockTypes => ReadableTypes.Where(t => GgmlTypeTraits.Find(t)!.BlockElements > 1).ToArray();

    [Test]
    public void Table_BlockGeometryAndNames_AgreeWithGgml_ForEveryKnownType()
    {
        Assert.That(GgmlTypeTraits.All.Select(t => t.Type), Is.EqualTo(Enum.GetValues<GgmlType>()), "one row per GgmlType, in code order");
        foreach (GgmlTypeTraits traits in GgmlTypeTraits.All)
        {
            Assert.That(GgmlTypeTraits.Find(traits.Type), Is.SameAs(traits));
            Assert.That((long)traits.BlockElements, Is.EqualTo(GgmlNative.BlockSize(traits.Type)), $"{traits.Type} block size");
            Assert.That((long)traits.BlockBytes, Is.EqualTo(GgmlNative.TypeSize(traits.Type)), $"{traits.Type} bytes per block");
            Assert.That(GgmlNative.TypeName(traits.Type), Is.EqualTo(traits.Type.ToString()).IgnoreCase, $"{traits.Type} name");
        }
    }

    [Test]
    public void Table_ReadsExactlyThePresetTypes_AndNamesTheirLoadFormats()
    {
        Assert.That(GgmlTypeTraits.All.Where(t => t.IsReadable).Select(t => t.Type), Is.EquivalentTo(ReadableTypes));
        foreach (GgmlTypeTraits traits in GgmlTypeTraits.All)
        {
            GgmlLoadFormat? expected = !ReadableTypes.Contains(traits.Type) ? null
                : traits.Type == GgmlType.Q4_0 ? GgmlLoadFormat.PackedInt4
                : traits.Type is GgmlType.Q8_0 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q5_K or GgmlType.Q6_K ? GgmlLoadFormat.GroupedInt8
                : SuperBlockInt4Types.Contains(traits.Type) ? GgmlLoadFormat.SuperBlockInt4
                : GgmlLoadFormat.Fp32;
            Assert.That(traits.LoadFormat, Is.EqualTo(expected), traits.Type.ToString());
        }
        Assert.That(GgmlTypeTraits.Find((GgmlType)4), Is.Null, "code 4 (Q4_2) was removed from ggml");
        Assert.That(GgmlTypeTraits.Find((GgmlType)1000), Is.Null);
        Assert.Throws<NotSupportedException>(() => GgmlTypeTraits.Find(GgmlType.IQ2_XXS)!.DequantizeRow(new byte[66], new float[256]));
    }

    private static IEnumerable<TestCaseData> BlockStructs()
    {
        // (type, struct, fields in order with their byte offsets from ggml-common.h)
        yield return Case<BlockQ4_0>(GgmlType.Q4_0, BlockQ4_0.Elements, BlockQ4_0.Bytes, ("Scale", 0), ("Nibbles", 2));
        yield return Case<BlockQ4_1>(GgmlType.Q4_1, BlockQ4_1.Elements, BlockQ4_1.Bytes, ("Scale", 0), ("Min", 2), ("Nibbles", 4));
        yield return Case<BlockQ5_0>(GgmlType.Q5_0, BlockQ5_0.Elements, BlockQ5_0.Bytes, ("Scale", 0), ("HighBits", 2), ("Nibbles", 6));
        yield return Case<BlockQ5_1>(GgmlType.Q5_1, BlockQ5_1.Elements, BlockQ5_1.Bytes, ("Scale", 0), ("Min", 2), ("HighBits", 4), ("Nibbles", 8));
        yield return Case<BlockQ8_0>(GgmlType.Q8_0, BlockQ8_0.Elements, BlockQ8_0.Bytes, ("Scale", 0), ("Codes", 2));
        yield return Case<BlockQ2_K>(GgmlType.Q2_K, BlockQ2_K.Elements, BlockQ2_K.Bytes, ("Scales", 0), ("Codes", 16), ("Scale", 80), ("Min", 82));
        yield return Case<BlockQ3_K>(GgmlType.Q3_K, BlockQ3_K.Elements, BlockQ3_K.Bytes, ("HighMask", 0), ("Codes", 32), ("Scales", 96), ("Scale", 108));
        yield return Case<BlockQ4_K>(GgmlType.Q4_K, BlockQ4_K.Elements, BlockQ4_K.Bytes, ("Scale", 0), ("Min", 2), ("Scales", 4), ("Nibbles", 16));
        yield return Case<BlockQ5_K>(GgmlType.Q5_K, BlockQ5_K.Elements, BlockQ5_K.Bytes, ("Scale", 0), ("Min", 2), ("Scales", 4), ("HighBits", 16), ("Nibbles", 48));
        yield return Case<BlockQ6_K>(GgmlType.Q6_K, BlockQ6_K.Elements, BlockQ6_K.Bytes, ("Low", 0), ("High", 128), ("Scales", 192), ("Scale", 208));
        yield return Case<BlockIQ4_NL>(GgmlType.IQ4_NL, BlockIQ4_NL.Elements, BlockIQ4_NL.Bytes, ("Scale", 0), ("Nibbles", 2));
        yield return Case<BlockIQ4_XS>(GgmlType.IQ4_XS, BlockIQ4_XS.Elements, BlockIQ4_XS.Bytes, ("Scale", 0), ("ScalesHigh", 2), ("ScalesLow", 4), ("Nibbles", 8));

        static TestCaseData Case<T>(GgmlType type, int elements, int bytes, params (string Field, int Offset)[] fields) where T : unmanaged =>
            new TestCaseData(type, typeof(T), elements, bytes, Unsafe.SizeOf<T>(), fields).SetArgDisplayNames(type.ToString());
    }

    [TestCaseSource(nameof(BlockStructs))]
    public void BlockStruct_SizeAndFieldOffsets_AreGgmls(GgmlType type, Type block, int elements, int bytes, int size, (string Field, int Offset)[] fields)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        Assert.That(size, Is.EqualTo(bytes), "Unsafe.SizeOf = Bytes");
        Assert.That(Marshal.SizeOf(block), Is.EqualTo(bytes), "Marshal.SizeOf = Bytes");
        Assert.That((traits.BlockElements, traits.BlockBytes), Is.EqualTo((elements, bytes)), "the table's row");
        Assert.That((GgmlNative.BlockSize(type), GgmlNative.TypeSize(type)), Is.EqualTo(((long)elements, (long)bytes)), "ggml's sizes");
        Assert.That(block.GetFields().Where(f => !f.IsLiteral).Select(f => f.Name), Is.EqualTo(fields.Select(f => f.Field)), "fields in order");
        foreach ((string field, int offset) in fields)
            Assert.That((int)Marshal.OffsetOf(block, field), Is.EqualTo(offset), field);
    }

    [TestCaseSource(nameof(ReadableTypes))]
    public void Dequantizer_IsBitIdenticalToGgmls_OnRowsGgmlQuantized(GgmlType type)
    {
        const int rows = 12, cols = 512;
        float[] values = RandomRows(new Random(17 + (int)type), rows, cols); // (rows, cols)
        byte[] bytes = GgmlNative.Quantize(type, values, rows, cols);
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        int rowBytes = (int)traits.RowBytes(cols);
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<byte> row = bytes.AsSpan(r * rowBytes, rowBytes);
            var ours = new float[cols];
            traits.DequantizeRow(row, ours);
            AssertBitIdentical(ours, GgmlNative.Dequantize(type, row, cols), $"{type} row {r}");
        }
    }

    [TestCaseSource(nameof(BlockTypes))]
    public void Dequantizer_IsBitIdenticalToGgmls_OnHandMadeEdgeBlocks(GgmlType type)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        byte[] row = EdgeBlockRow(type);
        var ours = new float[row.Length / traits.BlockBytes * traits.BlockElements];
        traits.DequantizeRow(row, ours);
        AssertBitIdentical(ours, GgmlNative.Dequantize(type, row, ours.Length), $"{type} edge blocks");
    }

    /// <summary>
    /// 81 hand-made blocks of <paramref name="type"/>: every byte pattern of codes and sub-block scales (random, all 0x00,
    /// all 0xFF, alternating bits) under fp16 scales and minimums that are zero, negative, subnormal, one or the largest finite half.
    /// </summary>
    internal static byte[] EdgeBlockRow(GgmlType type)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        int[] halfOffsets = HalfFieldOffsets(type);
        Half[] scales = [Half.Zero, Half.One, (Half)(-1f), Half.MaxValue, Half.MinValue, Half.Epsilon, (Half)(-0.0123f), Half.NegativeZero, (Half)3.5e-5f];
        byte[] fills = [0x00, 0xFF, 0x55, 0xAA];
        var random = new Random(5 + (int)type);
        var blocks = new List<byte[]>();
        foreach (Half d in scales)
            foreach (Half m in scales.Reverse())
            {
                var block = new byte[traits.BlockBytes];
                random.NextBytes(block);
                if (blocks.Count % 8 < fills.Length) Array.Fill(block, fills[blocks.Count % 8]); // half the blocks one byte repeated, half random
                for (int f = 0; f < halfOffsets.Length; f++) MemoryMarshal.Write(block.AsSpan(halfOffsets[f]), f == 0 ? d : m);
                blocks.Add(block);
            }
        return blocks.SelectMany(b => b).ToArray();
    }

    [TestCase(GgmlType.F16)]
    [TestCase(GgmlType.BF16)]
    public void HalfWidthFloats_AreBitIdenticalToGgmls_ForEveryNonNaNPattern(GgmlType type)
    {
        ushort[] patterns = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i)
            .Where(p => type == GgmlType.F16 ? !Half.IsNaN(BitConverter.UInt16BitsToHalf(p)) : !float.IsNaN(BitConverter.Int32BitsToSingle(p << 16)))
            .ToArray();
        byte[] bytes = MemoryMarshal.AsBytes(patterns.AsSpan()).ToArray();
        var ours = new float[patterns.Length];
        GgmlTypeTraits.Find(type)!.DequantizeRow(bytes, ours);
        AssertBitIdentical(ours, GgmlNative.Dequantize(type, bytes, patterns.Length), type.ToString());
    }

    [Test]
    public void DequantizeRow_RefusesMismatchedLengths()
    {
        GgmlTypeTraits q4k = GgmlTypeTraits.Find(GgmlType.Q4_K)!;
        Assert.Throws<ArgumentException>(() => q4k.DequantizeRow(new byte[BlockQ4_K.Bytes], new float[255]));
        Assert.Throws<ArgumentException>(() => q4k.DequantizeRow(new byte[BlockQ4_K.Bytes - 1], new float[256]));
        Assert.Throws<ArgumentException>(() => q4k.RowBytes(100));
        Assert.That(q4k.RowBytes(512), Is.EqualTo(2 * BlockQ4_K.Bytes));
    }

    /// <summary>Byte offsets of the block struct's fp16 fields of <paramref name="type"/>: the scale d first, then the minimum when it has one.</summary>
    internal static int[] HalfFieldOffsets(GgmlType type)
    {
        Type block = typeof(BlockQ4_0).Assembly.GetType($"{typeof(BlockQ4_0).Namespace}.Block{type}")!;
        return new[] { "Scale", "Min" }.Where(f => block.GetField(f) is not null).Select(f => (int)Marshal.OffsetOf(block, f)).ToArray();
    }

    // Rows of different character: Gaussian-like with outliers, all zero, one negative constant, tiny (subnormal fp16
    // scales), large, and all-positive (asymmetric types' minimum at a positive value).
    internal static float[] RandomRows(Random random, int rows, int cols)
    {
        var values = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = values.AsSpan(r * cols, cols);
            float amplitude = r switch { 2 => 1e-6f, 3 => 300f, _ => 0.05f + r * 0.1f };
            for (int c = 0; c < cols; c++)
            {
                float gaussian = (random.NextSingle() + random.NextSingle() + random.NextSingle() - 1.5f) * 2;
                row[c] = r switch
                {
                    0 => 0,
                    1 => -0.75f,
                    4 => amplitude * Math.Abs(gaussian) + 0.5f,
                    _ => amplitude * gaussian * (random.Next(64) == 0 ? 8 : 1),
                };
            }
        }
        return values;
    }

    internal static void AssertBitIdentical(float[] ours, float[] ggml, string what)
    {
        Assert.That(ours.Length, Is.EqualTo(ggml.Length), what);
        for (int i = 0; i < ours.Length; i++)
            if (BitConverter.SingleToInt32Bits(ours[i]) != BitConverter.SingleToInt32Bits(ggml[i]))
                Assert.Fail($"{what}: element {i} is {ours[i]:R} (0x{BitConverter.SingleToInt32Bits(ours[i]):X8}), ggml's is {ggml[i]:R} (0x{BitConverter.SingleToInt32Bits(ggml[i]):X8})");
    }
}
