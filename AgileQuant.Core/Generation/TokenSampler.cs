namespace AgileQuant.Core.Generation;

/// <summary>
/// Chooses the next token from logits: argmax when the temperature is 0, otherwise softmax(logits / T)
/// restricted to the top-k tokens, then to the top-p nucleus, sampled with a seeded generator.
/// </summary>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private int[] _order = [];
    private double[] _probabilities = [];
    private float[] _logits = []; // (vocab) copy of the logits being sampled, reused across calls

    /// <summary>Creates a sampler; its random sequence is fixed by <see cref="SamplingOptions.Seed"/>.</summary>
    public TokenSampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
    }

    /// <summary>Picks a token id from <paramref name="logits"/> (vocab).</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("Logits are empty.", nameof(logits));
        // NaN or +∞ means the forward pass overflowed; −∞ is a legitimate "never" (masking), unless every logit is −∞.
        bool anyAboveMinusInfinity = false;
        for (int i = 0; i < logits.Length; i++)
        {
            if (float.IsNaN(logits[i]) || float.IsPositiveInfinity(logits[i]))
                throw new AgileQuantException($"The model produced a {(float.IsNaN(logits[i]) ? "NaN" : "+infinite")} logit at token {i}; refusing to sample from garbage.");
            anyAboveMinusInfinity |= !float.IsNegativeInfinity(logits[i]);
        }
        if (!anyAboveMinusInfinity) throw new AgileQuantException("Every logit is −infinity; there is no token to sample.");
        if (_options.Temperature == 0f) return ArgMax(logits);

        int v = logits.Length;
        if (_order.Length < v) { _order = new int[v]; _probabilities = new double[v]; _logits = new float[v]; }
        Span<int> order = _order.AsSpan(0, v);
        for (int i = 0; i < v; i++) order[i] = i;
        // Sort token ids by logit, descending (ties by id for determinism).
        float[] copy = _logits;
        logits.CopyTo(copy);
        order.Sort((a, b) => copy[b] != copy[a] ? copy[b].CompareTo(copy[a]) : a.CompareTo(b));
        int keep = _options.TopK > 0 ? Math.Min(_options.TopK, v) : v;

        // p_i = exp((l_i − l_max)/T) / Σ, over the kept tokens
        double max = copy[order[0]], sum = 0;
        Span<double> p = _probabilities.AsSpan(0, keep);
        for (int i = 0; i < keep; i++) { p[i] = Math.Exp((copy[order[i]] - max) / _options.Temperature); sum += p[i]; }
        for (int i = 0; i < keep; i++) p[i] /= sum;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            int nucleus = keep;
            for (int i = 0; i < keep; i++)
            {
                cumulative += p[i];
                if (cumulative >= _options.TopP) { nucleus = i + 1; break; }
            }
            keep = nucleus;
            double renorm = 0;
            for (int i = 0; i < keep; i++) renorm += p[i];
            for (int i = 0; i < keep; i++) p[i] /= renorm;
        }
        double r = _random.NextDouble(), acc = 0;
        for (int i = 0; i < keep; i++)
        {
            acc += p[i];
            if (r < acc) return order[i];
        }
        return order[keep - 1];
    }

    /// <summary>Index of the largest logit (the first one on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
