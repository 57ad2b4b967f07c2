using System.Numerics.Tensors;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Encoder;

/// <summary>How close a set of embeddings is to a reference set of the same sentences.</summary>
/// <param name="MeanCosine">Mean over sentences of cos(e_i, r_i).</param>
/// <param name="MinCosine">Minimum over sentences of cos(e_i, r_i).</param>
/// <param name="NeighbourOverlap">Mean over sentences of |N_k(e, i) ∩ N_k(r, i)| / k, N_k the k nearest other sentences by cosine.</param>
public sealed record EmbeddingAgreement(double MeanCosine, double MinCosine, double NeighbourOverlap);

/// <summary>Compares sentence embeddings (rows of equal width) with reference embeddings of the same sentences.</summary>
public static class EmbeddingComparison
{
    /// <summary>Cosine similarity of two vectors, accumulated in double precision.</summary>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"Expected vectors of equal length, found {a.Length} and {b.Length}.", nameof(b));
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }

    /// <summary>Mean and minimum cosine between matching rows, and the k-nearest-neighbour overlap.</summary>
    public static EmbeddingAgreement Compare(IReadOnlyList<float[]> embeddings, IReadOnlyList<float[]> reference, int k = 10)
    {
        ArgumentNullException.ThrowIfNull(embeddings);
        ArgumentNullException.ThrowIfNull(reference);
        if (embeddings.Count != reference.Count || embeddings.Count == 0)
            throw new ArgumentException($"Expected equal, non-zero counts, found {embeddings.Count} and {reference.Count}.", nameof(reference));
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        int n = embeddings.Count;
        double sum = 0, min = double.PositiveInfinity;
        for (int i = 0; i < n; i++)
        {
            double c = Cosine(embeddings[i], reference[i]);
            sum += c;
            min = Math.Min(min, c);
        }
        int kk = Math.Min(k, n - 1);
        double overlap = 0;
        if (kk > 0)
        {
            int[][] a = NearestNeighbours(embeddings, kk), b = NearestNeighbours(reference, kk);
            for (int i = 0; i < n; i++) overlap += (double)a[i].Intersect(b[i]).Count() / kk;
            overlap /= n;
        }
        return new EmbeddingAgreement(sum / n, min, kk > 0 ? overlap : 1);
    }

    /// <summary>For each row, the indices of the <paramref name="k"/> other rows with the highest cosine (ties by index).</summary>
    public static int[][] NearestNeighbours(IReadOnlyList<float[]> rows, int k)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int n = rows.Count;
        float[][] unit = rows.Select(r =>
        {
            float[] u = (float[])r.Clone();
            SentencePooling.Normalize(u);
            return u;
        }).ToArray();
        var result = new int[n][];
        Parallel.For(0, n, i =>
        {
            var similarity = new float[n];
            for (int j = 0; j < n; j++) similarity[j] = j == i ? float.NegativeInfinity : TensorPrimitives.Dot(unit[i], unit[j]);
            int[] order = Enumerable.Range(0, n).ToArray();
            Array.Sort(order, (x, y) => similarity[y].CompareTo(similarity[x]) is var c && c != 0 ? c : x.CompareTo(y));
            result[i] = order[..Math.Min(k, n - 1)];
        });
        return result;
    }
}

/// <summary>
/// Per input channel, the largest |x| each linear slot of each layer sees (<see cref="ILinearInputObserver"/>): the
/// activation outliers that per-token activation quantization must fit into one scale.
/// </summary>
public sealed class ActivationChannelMaxima : ILinearInputObserver
{
    private readonly Dictionary<(int Layer, LinearSlot Slot), float[]> _maxima = [];
    private readonly object _gate = new();

    /// <summary>max |x[:, c]| per (layer, slot), one entry per input channel c.</summary>
    public IReadOnlyDictionary<(int Layer, LinearSlot Slot), float[]> Maxima => _maxima;

    /// <inheritdoc />
    public void Observe(int layer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        int width = input.Length / tokens;
        lock (_gate)
        {
            if (!_maxima.TryGetValue((layer, slot), out float[]? max)) _maxima[(layer, slot)] = max = new float[width];
            for (int t = 0; t < tokens; t++)
            {
                ReadOnlySpan<float> row = input.Slice(t * width, width);
                for (int c = 0; c < width; c++) max[c] = MathF.Max(max[c], MathF.Abs(row[c]));
            }
        }
    }
}
