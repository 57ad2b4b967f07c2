using AgileQuant.Core.Runtime;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// <see cref="AttentionTiles"/>: the blocked score and value products against their double-precision definitions, and
/// a row's result independent of the tile it is computed in (four rows at once = each row alone, bit for bit).
/// </summary>
public unsafe class AttentionTilesTests
{
    private const int Stride = 80; // slot stride of the transposed cache rows: a multiple of AttentionTiles.SlotAlignment

    private static float[] RandomValues(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    [TestCase(64, 8)]
    [TestCase(64, 48)]
    [TestCase(5, 72)]
    public void ScoresMatchTheDefinitionAndDoNotDependOnTheTile(int headDim, int slots)
    {
        int width = AttentionTiles.PaddedWidth(slots);
        float[] queries = RandomValues(AttentionTiles.TileRows * headDim, 1); // (4, headDim)
        float[] keys = RandomValues(headDim * Stride, 2);                     // (headDim, Stride) transposed keys
        float[] tile = new float[AttentionTiles.TileRows * Stride];            // (4, Stride)
        float[] single = new float[Stride];                                   // (Stride)
        const float scale = 0.125f;
        fixed (float* q = queries, k = keys, s = tile, one = single)
        {
            AttentionTiles.Scores(q, headDim, AttentionTiles.TileRows, k, Stride, headDim, scale, s, Stride, width);
            for (int t = 0; t < AttentionTiles.TileRows; t++)
            {
                AttentionTiles.Scores(q + t * headDim, headDim, 1, k, Stride, headDim, scale, one, Stride, width);
                Assert.That(tile.AsSpan(t * Stride, width).ToArray(), Is.EqualTo(single.AsSpan(0, width).ToArray()), $"row {t} alone");
                for (int j = 0; j < slots; j++)
                {
                    double expected = 0;
                    for (int d = 0; d < headDim; d++) expected += (double)queries[t * headDim + d] * keys[d * Stride + j];
                    Assert.That(tile[t * Stride + j], Is.EqualTo(expected * scale).Within(1e-5), $"row {t}, slot {j}");
                }
            }
        }
    }

    [TestCase(64, 8)]
    [TestCase(64, 48)]
    [TestCase(7, 72)]
    public void WeightedValuesMatchTheDefinitionAndDoNotDependOnTheTile(int headDim, int slots)
    {
        int width = AttentionTiles.PaddedWidth(slots);
        float[] probabilities = new float[AttentionTiles.TileRows * Stride]; // (4, Stride), zero past each row's visible slots
        var random = new Random(3);
        for (int t = 0; t < AttentionTiles.TileRows; t++)
            for (int j = 0; j < slots - t; j++) probabilities[t * Stride + j] = (float)random.NextDouble();
        float[] values = RandomValues(headDim * Stride, 4);  // (headDim, Stride) transposed values
        float[] tile = new float[AttentionTiles.TileRows * headDim]; // (4, headDim)
        float[] single = new float[headDim];                 // (headDim)
        fixed (float* p = probabilities, v = values, o = tile, one = single)
        {
            AttentionTiles.WeightedValues(p, Stride, AttentionTiles.TileRows, v, Stride, headDim, o, headDim, width);
            for (int t = 0; t < AttentionTiles.TileRows; t++)
            {
                // alone, the row's own width: the tile's extra zero probabilities change nothing
                AttentionTiles.WeightedValues(p + t * Stride, Stride, 1, v, Stride, headDim, one, headDim, AttentionTiles.PaddedWidth(slots - t));
                Assert.That(tile.AsSpan(t * headDim, headDim).ToArray(), Is.EqualTo(single), $"row {t} alone");
                for (int d = 0; d < headDim; d++)
                {
                    double expected = 0;
                    for (int j = 0; j < slots; j++) expected += (double)probabilities[t * Stride + j] * values[d * Stride + j];
                    Assert.That(tile[t * headDim + d], Is.EqualTo(expected).Within(1e-4), $"row {t}, dimension {d}");
                }
            }
        }
    }

    [TestCase(1, 0, 8)]
    [TestCase(7, 0, 40)]
    [TestCase(8, 8, 24)]
    [TestCase(19, 0, 21)]
    [TestCase(35, 16, 40)]
    public void TransposeWritesEveryChannelRowAndNothingElse(int tokens, int channelBegin, int channelEnd)
    {
        const int Channels = 40, SlotStride = 57, FirstSlot = 3;
        float[] rows = RandomValues(tokens * Channels, 5); // (tokens, Channels)
        float[] cache = new float[Channels * SlotStride];  // (Channels, SlotStride), slots FirstSlot.. written
        cache.AsSpan().Fill(float.NaN);
        fixed (float* x = rows, t = cache)
            AttentionTiles.Transpose(x, Channels, tokens, channelBegin, channelEnd, t + FirstSlot, SlotStride);
        for (int c = 0; c < Channels; c++)
            for (int s = 0; s < SlotStride; s++)
            {
                bool written = c >= channelBegin && c < channelEnd && s >= FirstSlot && s < FirstSlot + tokens;
                float value = cache[c * SlotStride + s];
                if (written) Assert.That(value, Is.EqualTo(rows[(s - FirstSlot) * Channels + c]), $"channel {c}, slot {s}");
                else Assert.That(value, Is.NaN, $"channel {c}, slot {s} must stay untouched");
            }
    }
}
