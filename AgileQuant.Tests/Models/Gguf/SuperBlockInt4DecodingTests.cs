using System.Runtime.InteropServices;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// The types that load as <see cref="SuperBlockInt4Matrix"/> (Q4_1, Q2_K, Q3_K, Q4_K, IQ4_NL, IQ4_XS): each type's decoder
/// carries ggml's blocks into the format so that every weight read back (<see cref="SuperBlockInt4Matrix.Dequantize"/>)
/// equals llama.cpp's own <c>dequantize_row_*</c> bit for bit, on rows ggml's quantizer made and on hand-made edge blocks
/// (every code and sub-block scale pattern, zero, negative, subnormal and extreme fp16 scales and minimums).
/// </summary>
public class SuperBlockInt4DecodingTests
{
    private static IEnumerable<TestCaseData> Types() =>
        GgmlTypeTraitsTests.SuperBlockInt4Types.Select(t => new TestCaseData(t).SetArgDisplayNames(t.ToString()));

    [TestCaseSource(nameof(Types))]
    public void Decoded_ValuesEqualGgmls_OnRowsGgmlQuantized(GgmlType type)
    {
        const int rows = 12, cols = 512;
        float[] values = GgmlTypeTraitsTests.RandomRows(new Random(31 + (int)type), rows, cols);
        byte[] bytes = GgmlNative.Quantize(type, values, rows, cols);
        AssertReadsBack(type, bytes, rows, cols);
    }

    [TestCaseSource(nameof(Types))]
    public void Decoded_ValuesEqualGgmls_OnHandMadeEdgeBlocks(GgmlType type)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        byte[] row = GgmlTypeTraitsTests.EdgeBlockRow(type);
        AssertReadsBack(type, row, 1, row.Length / traits.BlockBytes * traits.BlockElements);
    }

    [Test]
    public void Decoders_SchemesMatchTheTypes()
    {
        Assert.That(Scheme(GgmlType.Q4_K), Is.EqualTo((32, 256, 0, false, true)));
        Assert.That(Scheme(GgmlType.Q2_K), Is.EqualTo((16, 256, 0, false, true)));
        Assert.That(Scheme(GgmlType.Q3_K), Is.EqualTo((16, 256, 4, false, false)));
        Assert.That(Scheme(GgmlType.IQ4_XS), Is.EqualTo((32, 256, 0, true, false)));
        Assert.That(Scheme(GgmlType.IQ4_NL), Is.EqualTo((32, 32, 0, true, false)));
        Assert.That(Scheme(GgmlType.Q4_1), Is.EqualTo((32, 32, 0, false, true)));
        Assert.That(GgmlTypeTraits.Find(GgmlType.IQ4_NL)!.SuperBlockDecoding!.Scheme.Codebook.ToArray(), Is.EqualTo(GgmlBlockCodec.Iq4Codebook.ToArray()));

        static (int, int, int, bool, bool) Scheme(GgmlType type)
        {
            SuperBlockInt4Scheme s = GgmlTypeTraits.Find(type)!.SuperBlockDecoding!.Scheme;
            return (s.SubBlockSize, s.SuperBlockSize, s.CodeOffset, s.HasCodebook, s.HasMins);
        }
    }

    /// <summary>
    /// <paramref name="bytes"/> (rows of <paramref name="type"/> blocks) decoded into a <see cref="SuperBlockInt4Matrix"/> as the
    /// GGUF converter does it, every element read back bit-identical to ggml's dequantization.
    /// </summary>
    private static void AssertReadsBack(GgmlType type, byte[] bytes, int rows, int cols)
    {
        SuperBlockInt4Matrix matrix = Decode(type, bytes, rows, cols);
        var ours = new float[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) ours[r * cols + c] = matrix.Dequantize(r, c);
        GgmlTypeTraitsTests.AssertBitIdentical(ours, GgmlNative.Dequantize(type, bytes, rows * cols), $"{type} read back from {nameof(SuperBlockInt4Matrix)}");
    }

    /// <summary>Rows of <paramref name="type"/>'s blocks → a <see cref="SuperBlockInt4Matrix"/> through the type's decoder.</summary>
    internal static SuperBlockInt4Matrix Decode(GgmlType type, byte[] bytes, int rows, int cols)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        Assert.That(traits.LoadFormat, Is.EqualTo(GgmlLoadFormat.SuperBlockInt4), type.ToString());
        GgmlSuperBlockDecoding decoding = traits.SuperBlockDecoding!;
        SuperBlockInt4Scheme scheme = decoding.Scheme;
        int rowBytes = (int)traits.RowBytes(cols), superBlocks = cols / scheme.SuperBlockSize, subBlocks = cols / scheme.SubBlockSize;
        int minSuper = scheme.HasMins ? superBlocks : 0, minSub = scheme.HasMins ? subBlocks : 0;
        var packed = new byte[rows * cols / 2];
        var superScales = new Half[rows * superBlocks];
        var superMins = new Half[rows * minSuper];
        var subScales = new sbyte[rows * subBlocks];
        var subMins = new byte[rows * minSub];
        for (int r = 0; r < rows; r++)
            decoding.DecodeRow(bytes.AsSpan(r * rowBytes, rowBytes), new SuperBlockRow(packed.AsSpan(r * cols / 2, cols / 2),
                superScales.AsSpan(r * superBlocks, superBlocks), superMins.AsSpan(r * minSuper, minSuper),
                subScales.AsSpan(r * subBlocks, subBlocks), subMins.AsSpan(r * minSub, minSub)));
        return SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, superScales, superMins, subScales, subMins);
    }
}
