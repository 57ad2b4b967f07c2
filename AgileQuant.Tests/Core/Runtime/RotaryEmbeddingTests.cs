using AgileQuant.Core.Runtime;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// <see cref="RotaryEmbedding"/>: the vectorized rotation by a cached cos/sin row equals the scalar definition
/// (a, b) → (a·cos − b·sin, a·sin + b·cos), θ_i = pos · θ^(−2i/d), bit for bit, for both pairings and head sizes
/// that are and are not whole vectors.
/// </summary>
public class RotaryEmbeddingTests
{
    // the definition as llama2.c (adjacent pairs) and Hugging Face (rotate_half) write it, one scalar pair at a time
    private static float[] Definition(float[] x, int headDim, int position, RotaryPairing pairing, float theta)
    {
        float[] y = (float[])x.Clone();
        int half = headDim / 2;
        for (int head = 0; head < x.Length; head += headDim)
            for (int i = 0; i < half; i++)
            {
                float angle = position * (1f / MathF.Pow(theta, 2 * i / (float)headDim));
                float cos = MathF.Cos(angle), sin = MathF.Sin(angle);
                int ia = head + (pairing == RotaryPairing.Adjacent ? 2 * i : i);
                int ib = head + (pairing == RotaryPairing.Adjacent ? 2 * i + 1 : i + half);
                float a = x[ia], b = x[ib];
                y[ia] = a * cos - b * sin;
                y[ib] = a * sin + b * cos;
            }
        return y;
    }

    [TestCase(RotaryPairing.Adjacent, 2)]
    [TestCase(RotaryPairing.Adjacent, 6)]
    [TestCase(RotaryPairing.Adjacent, 18)]
    [TestCase(RotaryPairing.Adjacent, 64)]
    [TestCase(RotaryPairing.RotateHalf, 2)]
    [TestCase(RotaryPairing.RotateHalf, 10)]
    [TestCase(RotaryPairing.RotateHalf, 40)]
    [TestCase(RotaryPairing.RotateHalf, 128)]
    public void RotationEqualsTheScalarDefinitionBitForBit(RotaryPairing pairing, int headDim)
    {
        const float theta = 10000f;
        var rotary = new RotaryEmbedding(headDim, theta, pairing);
        var random = new Random(headDim);
        foreach (int position in new[] { 0, 1, 7, 511, 4099 })
        {
            float[] query = Enumerable.Range(0, 3 * headDim).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray(); // 3 heads
            float[] key = Enumerable.Range(0, headDim).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();       // 1 head
            float[] expectedQuery = Definition(query, headDim, position, pairing, theta);
            float[] expectedKey = Definition(key, headDim, position, pairing, theta);

            float[] cachedQuery = (float[])query.Clone();
            float[] rotation = new float[rotary.RotationLength];
            rotary.FillRotation(position, rotation);
            rotary.Rotate(cachedQuery, rotation);
            rotary.Apply(query, key, position);

            Assert.That(query, Is.EqualTo(expectedQuery), $"Apply, query, position {position}");
            Assert.That(key, Is.EqualTo(expectedKey), $"Apply, key, position {position}");
            Assert.That(cachedQuery, Is.EqualTo(expectedQuery), $"cached rotation, position {position}");
        }
    }

    [Test]
    public void RotateRefusesAShortRotation()
    {
        var rotary = new RotaryEmbedding(8, 10000f, RotaryPairing.Adjacent);
        Assert.Throws<ArgumentException>(() => rotary.Rotate(new float[8], new float[8]));
    }
}
