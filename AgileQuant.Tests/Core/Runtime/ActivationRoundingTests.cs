using AgileQuant.Core.Runtime;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary><see cref="ActivationRounding.RoundRows"/> (vectorized) against its element-wise definition.</summary>
public class ActivationRoundingTests
{
    // The definition, one element at a time: s = max|x| / (2^(b−1) − 1), x ← s · clamp(round_half_even(x · (1/s)), ±limit).
    private static float[] RoundRowsElementWise(float[] values, int rows, int bits)
    {
        float[] result = (float[])values.Clone();
        int width = values.Length / rows;
        float limit = (1 << (bits - 1)) - 1;
        for (int r = 0; r < rows; r++)
        {
            float maxAbs = 0;
            for (int i = 0; i < width; i++) maxAbs = MathF.Max(maxAbs, MathF.Abs(values[r * width + i]));
            if (!(maxAbs > 0)) continue;
            float scale = maxAbs / limit, inverse = 1f / scale;
            for (int i = 0; i < width; i++)
            {
                float code = MathF.Round(values[r * width + i] * inverse, MidpointRounding.ToEven);
                result[r * width + i] = scale * Math.Clamp(code, -limit, limit);
            }
        }
        return result;
    }

    [TestCase(8)]
    [TestCase(4)]
    public void EqualsTheElementWiseDefinitionBitForBit(int bits)
    {
        var random = new Random(1234 + bits);
        float limit = (1 << (bits - 1)) - 1;
        for (int width = 1; width <= 70; width++)
        {
            const int rows = 3;
            var values = new float[rows * width];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * 5f;
            // exact ties: with max|x| = limit the scale is 1, so k + 0.5 must round to even
            if (width >= 3)
            {
                values[0] = limit;
                values[1] = 0.5f;
                values[2] = -2.5f;
            }
            float[] expected = RoundRowsElementWise(values, rows, bits);
            ActivationRounding.RoundRows(values, rows, bits);
            Assert.That(values, Is.EqualTo(expected), $"width {width}");
        }
    }

    [Test]
    public void AllZeroRowStaysZero()
    {
        var values = new float[8];
        ActivationRounding.RoundRows(values, 2, 8);
        Assert.That(values, Is.All.EqualTo(0f));
    }
}
