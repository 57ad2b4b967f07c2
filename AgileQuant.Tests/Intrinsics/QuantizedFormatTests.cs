using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

public sealed class QuantizedFormatTests
{
    [Test]
    public void Int4NibbleOrderIsLowForEvenColumnsAndHighForOdd()
    {
        // Row 0: codes 1, 2, 3 (symmetric: nibble = code + 8); row 1: -8, 7, 0.
        sbyte[] codes = [1, 2, 3, -8, 7, 0];
        PackedInt4Matrix w = PackedInt4Matrix.FromSymmetricCodes(codes, [0.5f, 0.25f], rows: 2, cols: 3, groupSize: 32);
        Assert.That(w.RowBytes, Is.EqualTo(32), "rows are padded to one 64-column block");
        Assert.That(w.Packed[0], Is.EqualTo((byte)((2 + 8) << 4 | (1 + 8))));
        Assert.That(w.Packed[1], Is.EqualTo((byte)(3 + 8)), "odd column count: the last high nibble is zero padding");
        Assert.That(w.Packed[32], Is.EqualTo((byte)((7 + 8) << 4 | 0)));
        Assert.That(w.Packed[33], Is.EqualTo((byte)8));
        Assert.That(w.Packed.Slice(2, 30).ToArray(), Is.All.Zero);
        Assert.That(w.Dequantize(1, 0), Is.EqualTo(-8 * 0.25f));
        Assert.That(w.Dequantize(0, 2), Is.EqualTo(3 * 0.5f));
        Assert.That(w.IsSymmetric, Is.True);
        Assert.That(w.ZeroPoint(1, 0), Is.EqualTo(8));
    }

    [TestCase(4096, 4096, 32, false, 4096L * 2048 + 4096L * 128 * 4)]
    [TestCase(4096, 4096, 128, true, 4096L * 2048 + 4096L * 32 * 5)]
    [TestCase(3, 172, 32, true, 3L * 96 + 3L * 6 * 5)]      // 172 cols → 3 blocks of 64 → 96 bytes; groups 5×32 + 12
    [TestCase(3, 172, 128, false, 3L * 96 + 3L * 2 * 4)]    // groups of 128 + a short one of 44
    [TestCase(2, 40, 32, false, 2L * 32 + 2L * 2 * 4)]      // 40 cols → one padded block of 64
    public void Int4ByteCountCountsPaddedNibblesScalesAndZeroPoints(int rows, int cols, int groupSize, bool asymmetric, long expected)
    {
        int groups = (cols + groupSize - 1) / groupSize;
        PackedInt4Matrix w = asymmetric
            ? PackedInt4Matrix.FromAsymmetricCodes(new byte[rows * cols], new float[rows * groups], new byte[rows * groups], rows, cols, groupSize)
            : PackedInt4Matrix.FromSymmetricCodes(new sbyte[rows * cols], new float[rows * groups], rows, cols, groupSize);
        Assert.That(w.GroupCount, Is.EqualTo(groups));
        Assert.That(w.ByteCount, Is.EqualTo(expected));
        Assert.That(w.Packed.Length, Is.EqualTo(rows * w.RowBytes));
    }

    [Test]
    public void Int4AsymmetricKeepsCodesAndZeroPoints()
    {
        byte[] codes = [0, 15, 9, 4];
        PackedInt4Matrix w = PackedInt4Matrix.FromAsymmetricCodes(codes, [2f], [3], rows: 1, cols: 4, groupSize: 64);
        Assert.That(Enumerable.Range(0, 4).Select(c => w.Nibble(0, c)), Is.EqualTo(new[] { 0, 15, 9, 4 }));
        Assert.That(w.Dequantize(0, 1), Is.EqualTo(2f * (15 - 3)));
        Assert.That(w.IsSymmetric, Is.False);
    }

    [Test]
    public void Int4RejectsBadInput()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedInt4Matrix.FromSymmetricCodes([8], [1f], 1, 1, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedInt4Matrix.FromSymmetricCodes([0], [1f], 1, 1, 48));
        Assert.Throws<ArgumentException>(() => PackedInt4Matrix.FromSymmetricCodes([0, 0], [1f], 1, 1, 32));
        Assert.Throws<ArgumentException>(() => PackedInt4Matrix.FromSymmetricCodes(new sbyte[40], [1f], 1, 40, 32), "40 cols need 2 groups of 32");
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedInt4Matrix.FromAsymmetricCodes([16], [1f], [0], 1, 1, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedInt4Matrix.FromAsymmetricCodes([1], [1f], [16], 1, 1, 32));
        Assert.Throws<ArgumentException>(() => PackedInt4Matrix.FromAsymmetricCodes([1], [1f], [], 1, 1, 32));
    }

    [Test]
    public void Int8RowMatrixPadsRowsAndCountsBytes()
    {
        sbyte[] codes = Enumerable.Range(0, 2 * 40).Select(i => (sbyte)(i - 40)).ToArray();
        var w = new Int8RowMatrix(codes, [0.5f, 2f], rows: 2, cols: 40);
        Assert.That(w.RowStride, Is.EqualTo(64));
        Assert.That(w.ByteCount, Is.EqualTo(2 * 64 + 2 * 4));
        Assert.That(w.Code(1, 0), Is.EqualTo(0));
        Assert.That(w.Code(0, 39), Is.EqualTo(-1));
        Assert.That(w.Codes.Slice(40, 24).ToArray(), Is.All.Zero);
        Assert.That(new Int8RowMatrix(new sbyte[4096 * 11008], new float[4096], 4096, 11008).ByteCount, Is.EqualTo(4096L * 11008 + 4096 * 4));
    }

    [Test]
    public void Int8RowMatrixRejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => new Int8RowMatrix(new sbyte[5], [1f], 1, 4));
        Assert.Throws<ArgumentException>(() => new Int8RowMatrix(new sbyte[4], [1f, 2f], 1, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Int8RowMatrix([], [], 0, 4));
    }
}
