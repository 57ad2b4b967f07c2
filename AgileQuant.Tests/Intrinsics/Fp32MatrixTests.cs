using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

public sealed class Fp32MatrixTests
{
    [TestCase(1, 1)]
    [TestCase(16, 5)]
    [TestCase(19, 7)]
    [TestCase(33, 300)]
    public void PanelsHoldEachElementAtItsDocumentedPlace(int rows, int cols)
    {
        float[] data = MatMulReference.RandomValues(rows * cols, seed: rows + cols);
        var matrix = new Fp32Matrix(data, rows, cols);
        ReadOnlySpan<float> panels = matrix.GetPanels();
        int panelCount = (rows + 15) / 16;
        Assert.That(matrix.PanelCount, Is.EqualTo(panelCount));
        Assert.That(panels.Length, Is.EqualTo(panelCount * 16 * cols));
        for (int r = 0; r < panelCount * 16; r++)
            for (int c = 0; c < cols; c++)
            {
                float expected = r < rows ? data[r * cols + c] : 0f; // padding rows of the last panel are zero
                Assert.That(panels[(r / 16) * 16 * cols + c * 16 + r % 16], Is.EqualTo(expected), $"({r}, {c})");
            }
    }

    [Test]
    public unsafe void PanelsStartOnA64ByteBoundaryAndAreBuiltOnce()
    {
        var matrix = new Fp32Matrix(new float[40 * 9], 40, 9);
        matrix.Prepack();
        fixed (float* first = matrix.GetPanels())
        fixed (float* second = matrix.GetPanels())
        {
            Assert.That((long)first % 64, Is.EqualTo(0L));
            Assert.That((nint)second, Is.EqualTo((nint)first));
        }
    }

    [Test]
    public void ByteCountIsFourBytesPerWeight() =>
        Assert.That(new Fp32Matrix(new float[12 * 7], 12, 7).ByteCount, Is.EqualTo(12 * 7 * 4));

    [Test]
    public void ConstructorRejectsBadShapes()
    {
        Assert.Throws<ArgumentException>(() => new Fp32Matrix(new float[10], 3, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Fp32Matrix(new float[0], 0, 4));
        Assert.Throws<ArgumentNullException>(() => new Fp32Matrix(null!, 1, 1));
    }
}
