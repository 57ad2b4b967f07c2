using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The x86 kernels' 8-row interleaved copies (<see cref="Int4RowBlocks"/>, <see cref="Int8RowBlocks"/>) hold exactly the source matrix.</summary>
public sealed class RowBlockLayoutTests
{
    private static readonly (int Rows, int Cols)[] Shapes = [(1, 1), (3, 172), (21, 512), (8, 8), (9, 7), (17, 33), (40, 288), (16, 100)];

    [Test]
    public void Int4ChunkBytesFollowTheDiagram()
    {
        // Row r, column c holds code (r + c) % 16 − 8 (symmetric: nibble (r + c) % 16); 9 rows × 12 columns.
        const int rows = 9, cols = 12;
        var codes = new sbyte[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) codes[r * cols + c] = (sbyte)((r + c) % 16 - 8);
        PackedInt4Matrix w = PackedInt4Matrix.FromSymmetricCodes(codes, Enumerable.Range(1, rows).Select(i => (float)i).ToArray(), rows, cols, 32);
        Int4RowBlocks blocks = w.RepackToRowBlocks();
        Assert.That((blocks.Blocks, blocks.Pairs, blocks.Chunks, blocks.Packed.Length), Is.EqualTo((2, 1, 2, 2 * 64)));
        // pair 0, chunk 0, block 0, row 1: bytes 4..7 = (c0 | c4 << 4) .. (c3 | c7 << 4) with nibble(1, c) = 1 + c
        Assert.That(blocks.Packed.AsSpan(4, 4).ToArray(), Is.EqualTo(new byte[] { 1 | 5 << 4, 2 | 6 << 4, 3 | 7 << 4, 4 | 8 << 4 }));
        // pair 0, chunk 0, block 1 (bytes 32..63) holds row 8 and seven zero rows
        Assert.That(blocks.Packed[32], Is.EqualTo((byte)(8 | 12 << 4)));
        Assert.That(blocks.Packed.AsSpan(32 + 4, 28).ToArray(), Is.All.Zero);
        // pair 0, chunk 1 (columns 8..11, then padding), block 0, row 0: high nibbles are padding zeros
        Assert.That(blocks.Packed.AsSpan(64, 4).ToArray(), Is.EqualTo(new byte[] { 8, 9, 10, 11 }));
        Assert.That(blocks.Scales.AsSpan(0, 8).ToArray(), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }));
        Assert.That(blocks.Scales.AsSpan(8, 8).ToArray(), Is.EqualTo(new float[] { 9, 0, 0, 0, 0, 0, 0, 0 }));
    }

    [Test]
    public void Int4RowBlocksHoldEveryNibbleScaleAndZeroPoint()
    {
        foreach ((int rows, int cols) in Shapes)
            foreach (int groupSize in new[] { 32, 64, 128 })
            {
                var random = new Random(rows * 1000 + cols);
                int groups = (cols + groupSize - 1) / groupSize;
                var codes = new byte[rows * cols];
                for (int i = 0; i < codes.Length; i++) codes[i] = (byte)random.Next(16);
                var zeros = new byte[rows * groups];
                for (int i = 0; i < zeros.Length; i++) zeros[i] = (byte)random.Next(16);
                float[] scales = MatMulReference.RandomValues(rows * groups, seed: cols);
                PackedInt4Matrix w = PackedInt4Matrix.FromAsymmetricCodes(codes, scales, zeros, rows, cols, groupSize);
                Int4RowBlocks blocks = w.RepackToRowBlocks();
                Assert.That(blocks.Packed.Length, Is.EqualTo(blocks.Pairs * blocks.Chunks * 64));
                Assert.That(blocks.Scales!.Length, Is.EqualTo(blocks.Pairs * groups * 16));
                for (int r = 0; r < blocks.Pairs * 16; r++) // the zero padding block of an odd block count included
                {
                    for (int c = 0; c < blocks.Chunks * 8; c++)
                        Assert.That(blocks.Nibble(r, c), Is.EqualTo(r < rows && c < cols ? codes[r * cols + c] : 0), $"{rows}x{cols} ({r}, {c})");
                    for (int g = 0; g < groups; g++)
                    {
                        int at = blocks.ScaleIndex(r, g);
                        Assert.That(blocks.Scales[at], Is.EqualTo(r < rows ? scales[r * groups + g] : 0f));
                        Assert.That(blocks.ZeroPoints![at], Is.EqualTo(r < rows ? w.ZeroPoint(r, g) : 0));
                    }
                }
            }
    }

    [Test]
    public void Int4MatrixReadsItsScalesBackFromTheRowBlocks()
    {
        // Once repacked, the matrix keeps only the row blocks' scales: Scale(r, g) reads them there and Scales
        // rebuilds the row-major array once; both must give exactly the values it was built with.
        foreach ((int rows, int cols) in Shapes)
            foreach (int groupSize in new[] { 32, 128 })
            {
                int groups = (cols + groupSize - 1) / groupSize;
                float[] scales = MatMulReference.RandomValues(rows * groups, seed: rows + cols);
                var codes = new sbyte[rows * cols];
                for (int i = 0; i < codes.Length; i++) codes[i] = (sbyte)(i % 16 - 8);
                PackedInt4Matrix w = PackedInt4Matrix.FromSymmetricCodes(codes, scales, rows, cols, groupSize);
                w.RepackToRowBlocks();
                for (int r = 0; r < rows; r++)
                    for (int g = 0; g < groups; g++) Assert.That(w.Scale(r, g), Is.EqualTo(scales[r * groups + g]), $"{rows}x{cols} G{groupSize} ({r}, {g})");
                Assert.That(w.Scales.ToArray(), Is.EqualTo(scales), $"{rows}x{cols} G{groupSize}");
                Assert.That(w.Scales.ToArray(), Is.EqualTo(scales), "read again");
                Assert.That(w.Dequantize(rows - 1, cols - 1), Is.EqualTo(scales[^1] * codes[^1]));
            }
    }

    [Test]
    public void Int8RowBlocksHoldEveryCodeAndScale()
    {
        foreach ((int rows, int cols) in Shapes)
        {
            var random = new Random(rows + cols);
            var codes = new sbyte[rows * cols];
            random.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(codes.AsSpan()));
            float[] scales = MatMulReference.RandomValues(rows, seed: cols);
            var w = new Int8RowMatrix(codes, scales, rows, cols);
            Int8RowBlocks blocks = w.RepackToRowBlocks();
            Assert.That(blocks.Codes.Length, Is.EqualTo(blocks.Blocks * blocks.Chunks * 32));
            for (int r = 0; r < blocks.Blocks * 8; r++)
            {
                for (int c = 0; c < blocks.Chunks * 4; c++)
                    Assert.That(blocks.Code(r, c), Is.EqualTo(r < rows && c < cols ? codes[r * cols + c] : 0), $"{rows}x{cols} ({r}, {c})");
                Assert.That(blocks.Scales[r], Is.EqualTo(r < rows ? scales[r] : 0f));
            }
            Assert.That(w.Codes.ToArray().Where((_, i) => i % w.RowStride < cols), Is.EqualTo(codes), "the row-major view rebuilt from the blocks");
        }
    }
}
