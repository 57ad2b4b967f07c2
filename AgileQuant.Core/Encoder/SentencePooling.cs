using System.Numerics.Tensors;

namespace AgileQuant.Core.Encoder;

/// <summary>Sentence-transformers pooling: mean over tokens, then L2 normalisation.</summary>
public static class SentencePooling
{
    /// <summary>m (d) = (1/n) Σ_i h[i] over the rows of <paramref name="hidden"/> (n, d).</summary>
    public static void MeanPool(ReadOnlySpan<float> hidden, int rows, Span<float> mean)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        int d = mean.Length;
        if (d == 0 || hidden.Length < (long)rows * d) throw new ArgumentException($"Expected {rows} rows of {d}, found {hidden.Length} values.", nameof(hidden));
        mean.Clear();
        for (int i = 0; i < rows; i++) TensorPrimitives.Add(mean, hidden.Slice(i * d, d), mean);
        TensorPrimitives.Multiply(mean, 1f / rows, mean);
    }

    /// <summary>v ← v / max(‖v‖₂, 1e−12), as torch.nn.functional.normalize.</summary>
    public static void Normalize(Span<float> vector)
    {
        float norm = TensorPrimitives.Norm(vector);
        TensorPrimitives.Multiply(vector, 1f / MathF.Max(norm, 1e-12f), vector);
    }
}
