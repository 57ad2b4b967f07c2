namespace AgileQuant.Core.Runtime;

/// <summary>Rotary position embeddings: rotates pairs of Q/K elements by <c>pos · θ^(−2i/d)</c>.</summary>
public sealed class RotaryEmbedding
{
    private readonly int _headDim;
    private readonly RotaryPairing _pairing;
    private readonly float[] _inverseFrequency; // (headDim/2)

    /// <summary>Creates the embedding for heads of width <paramref name="headDim"/>.</summary>
    public RotaryEmbedding(int headDim, float theta, RotaryPairing pairing)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        if (headDim % 2 != 0) throw new ArgumentException($"Rotary embeddings need an even head size, found {headDim}.", nameof(headDim));
        _headDim = headDim;
        _pairing = pairing;
        _inverseFrequency = new float[headDim / 2];
        // inv_freq[i] = 1 / θ^(2i/d), in float32 as Hugging Face and llama2.c compute it
        for (int i = 0; i < _inverseFrequency.Length; i++)
            _inverseFrequency[i] = 1f / MathF.Pow(theta, 2 * i / (float)headDim);
    }

    /// <summary>Rotates every head of <paramref name="vector"/> (heads·headDim) in place for position <paramref name="position"/>.</summary>
    public void Apply(Span<float> vector, int position) => Apply(vector, [], position);

    /// <summary>
    /// Rotates every head of <paramref name="query"/> and of <paramref name="key"/> (each heads·headDim) in place for
    /// <paramref name="position"/>, the angles' cosines and sines computed once for both.
    /// </summary>
    public void Apply(Span<float> query, Span<float> key, int position)
    {
        int half = _headDim / 2;
        Span<float> cos = stackalloc float[half];
        Span<float> sin = stackalloc float[half];
        for (int i = 0; i < half; i++)
        {
            float angle = position * _inverseFrequency[i];
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
        }
        Rotate(query, cos, sin);
        Rotate(key, cos, sin);
    }

    // (a, b) -> (a·cos − b·sin, a·sin + b·cos) for each pair of each head
    private void Rotate(Span<float> vector, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = _headDim / 2;
        bool adjacent = _pairing == RotaryPairing.Adjacent;
        for (int head = 0; head + _headDim <= vector.Length; head += _headDim)
        {
            Span<float> h = vector.Slice(head, _headDim);
            for (int i = 0; i < half; i++)
            {
                int ia = adjacent ? 2 * i : i;
                int ib = adjacent ? 2 * i + 1 : i + half;
                float a = h[ia], b = h[ib];
                h[ia] = a * cos[i] - b * sin[i];
                h[ib] = a * sin[i] + b * cos[i];
            }
        }
    }
}

/// <summary>ALiBi head slopes (Press et al.), as BLOOM computes them, including head counts that are not a power of two.</summary>
public static class AlibiSlopes
{
    /// <summary>
    /// Slopes for <paramref name="numHeads"/> heads: with p the largest power of two ≤ n, heads 0..p−1 get
    /// <c>2^(−8(i+1)/p)</c>; the remaining n−p heads take every other slope of the 2p-head sequence.
    /// </summary>
    public static float[] Compute(int numHeads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHeads);
        int closestPowerOfTwo = 1 << (int)Math.Floor(Math.Log2(numHeads));
        float[] slopes = new float[numHeads];
        // base = 2^(−2^(−(log2 p − 3))) = 2^(−8/p); slope_i = base^(i+1)
        float baseSlope = MathF.Pow(2f, -MathF.Pow(2f, -(MathF.Log2(closestPowerOfTwo) - 3f)));
        for (int i = 0; i < closestPowerOfTwo; i++) slopes[i] = MathF.Pow(baseSlope, i + 1);
        if (closestPowerOfTwo != numHeads)
        {
            float extraBase = MathF.Pow(2f, -MathF.Pow(2f, -(MathF.Log2(2 * closestPowerOfTwo) - 3f)));
            int extra = Math.Min(closestPowerOfTwo, numHeads - closestPowerOfTwo);
            for (int i = 0; i < extra; i++) slopes[closestPowerOfTwo + i] = MathF.Pow(extraBase, 2 * i + 1);
        }
        return slopes;
    }
}
