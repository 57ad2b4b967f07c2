using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The grouped 8-bit format: its values, its argument checks, and the x86 repack (codes and the compact scale encodings).</summary>
public sealed class GroupedInt8FormatTests
{
    [Test]
    public void GroupScales_ValuesAreScaleTimesCodeMinusOffset()
    {
        sbyte[] codes = [-128, 127, 5, -3, 0, 31, 7, -1]; // (2, 4), groups of 32: one group per row
        GroupedInt8Matrix w = GroupedInt8Matrix.FromGroupScales(codes, [0.5f, 0.25f], [1.5f, -2f], rows: 2, cols: 4, groupSize: 32);
        Assert.Multiple(() =>
        {
            Assert.That(w.GroupCount, Is.EqualTo(1));
            Assert.That(w.RowStride, Is.EqualTo(32));
            Assert.That(w.Dequantize(0, 0), Is.EqualTo(0.5f * -128 - 1.5f));
            Assert.That(w.Dequantize(1, 1), Is.EqualTo(0.25f * 31 + 2f));
            Assert.That(w.Code(1, 3), Is.EqualTo(-1));
            Assert.That(w.Codes[32 + 3], Is.EqualTo(-1));
            Assert.That(w.Codes[4], Is.EqualTo(0), "zero padding past Cols");
        });
    }

    [Test]
    public void SuperBlockScales_AreSuperTimesSubRoundedOnce()
    {
        var random = new Random(3);
        const int rows = 3, cols = 512, groups = 32, supers = 2; // groups of 16, 16 groups per super-block
        sbyte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-32, 32)).ToArray();
        float[] superScales = Enumerable.Range(0, rows * supers).Select(_ => random.NextSingle() * 1e-3f).ToArray();
        sbyte[] sub = Enumerable.Range(0, rows * groups).Select(_ => (sbyte)random.Next(-128, 128)).ToArray();
        GroupedInt8Matrix w = GroupedInt8Matrix.FromSuperBlockScales(codes, superScales, sub, [], [], rows, cols, 16, 16);
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < groups; g++)
            {
                float scale = superScales[r * supers + g / 16] * sub[r * groups + g];
                Assert.That(w.Scale(r, g), Is.EqualTo(scale));
                Assert.That(w.Dequantize(r, 16 * g + 5), Is.EqualTo(scale * codes[r * cols + 16 * g + 5]));
            }
        Assert.That(w.HasSuperBlockScales && !w.HasOffsets && w.SuperBlockCount == supers);
    }

    [Test]
    public void BadArguments_AreRefusedNamingWhatWasExpected()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => GroupedInt8Matrix.FromGroupScales(new sbyte[24], [1f], [], 1, 24, 24),
                Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("Expected a group size of 16 or 32, found 24"));
            Assert.That(() => GroupedInt8Matrix.FromGroupScales(new sbyte[16], [1f], [1f], 1, 16, 16),
                Throws.ArgumentException.With.Message.Contains("Expected groups of 32 columns for offsets"));
            Assert.That(() => GroupedInt8Matrix.FromGroupScales(new sbyte[64], [1f], [], 1, 64, 32),
                Throws.ArgumentException.With.Message.Contains("Expected 2 scales (1 rows x 2 groups of 32), found 1"));
            Assert.That(() => GroupedInt8Matrix.FromGroupScales(new sbyte[63], [1f, 1f], [], 1, 64, 32),
                Throws.ArgumentException.With.Message.Contains("Expected 64 codes for a 1x64 matrix, found 63"));
            Assert.That(() => GroupedInt8Matrix.FromSuperBlockScales(new sbyte[96], [1f], new sbyte[3], [], [], 1, 96, 32, 3),
                Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("Expected a power of two ≥ 1 groups per super-block, found 3"));
            Assert.That(() => GroupedInt8Matrix.FromSuperBlockScales(new sbyte[64], [1f], new sbyte[2], [1f], [], 1, 64, 32, 2),
                Throws.ArgumentException.With.Message.Contains("super-block offsets and sub-offsets together or neither"));
        });
    }

    private static IEnumerable<TestCaseData> Layouts() =>
        Enum.GetNames<GroupedInt8Layout>().Select(l => new TestCaseData(l).SetArgDisplayNames(l));

    [TestCaseSource(nameof(Layouts))]
    public void Repack_KeepsEveryCodeAndPicksTheCompactExactEncoding(string layoutName)
    {
        GroupedInt8Layout layout = Enum.Parse<GroupedInt8Layout>(layoutName);
        GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(7), rows: 19, cols: 300, layout, symmetricCodes: false);
        sbyte[] before = w.Codes.ToArray();
        float[] values = Enumerable.Range(0, 19 * 300).Select(i => w.Dequantize(i / 300, i % 300)).ToArray();
        GroupedInt8RowBlocks blocks = w.RepackToRowBlocks();
        Assert.That(w.RepackToRowBlocks(), Is.SameAs(blocks), "repacked once");
        Assert.That(w.Codes.ToArray(), Is.EqualTo(before), "the row-major view rebuilt from the blocks");
        Assert.That(Enumerable.Range(0, 19 * 300).Select(i => w.Dequantize(i / 300, i % 300)), Is.EqualTo(values));
        GroupScaleEncoding expected = layout switch
        {
            GroupedInt8Layout.Q8Like => GroupScaleEncoding.Half,
            GroupedInt8Layout.Q6KLike or GroupedInt8Layout.Q5KLike => GroupScaleEncoding.SuperBlock,
            _ => GroupScaleEncoding.Single,
        };
        Assert.That(blocks.Encoding, Is.EqualTo(expected));
        Assert.That(blocks.Chunks, Is.EqualTo(w.GroupCount * w.GroupSize / 4), "whole groups");
    }
}
