namespace AgileQuant.Core.Generation;

/// <summary>
/// Chooses the next token from logits: penalties over the recently accepted tokens (<see cref="Accept"/>), then argmax
/// when the temperature is 0, otherwise softmax(logits / T) restricted to the top-k tokens, then to the top-p nucleus,
/// then to the tokens at least min-p times as likely as the best one, sampled with a seeded generator.
/// </summary>
/// <remarks>Not thread-safe: one sampler per generation. Buffers are sized on the first call and reused, so sampling allocates nothing.</remarks>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private int[] _order = [];          // (vocab) candidate token ids, best first once sorted
    private double[] _probabilities = []; // (vocab) probabilities of the sorted candidates
    private float[] _logits = [];       // (vocab) copy of the logits being sampled (penalized), reused across calls
    private int[] _counts = [];         // (vocab) occurrences in the penalty window; all zero between calls
    private readonly int[] _recent;     // (PenaltyWindow) ring of the latest accepted tokens
    private int _recentCount;
    private int _recentNext;

    /// <summary>Creates a sampler; its random sequence is fixed by <see cref="SamplingOptions.Seed"/>.</summary>
    public TokenSampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
        _recent = options.HasPenalties ? new int[options.PenaltyWindow] : [];
    }

    /// <summary>
    /// Records a token of the sequence (a prompt token or a generated one) for the penalties; the latest
    /// <see cref="SamplingOptions.PenaltyWindow"/> are kept. Does nothing when no penalty is set.
    /// </summary>
    public void Accept(int tokenId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenId);
        if (_recent.Length == 0) return;
        _recent[_recentNext] = tokenId;
        _recentNext = (_recentNext + 1) % _recent.Length;
        if (_recentCount < _recent.Length) _recentCount++;
    }

    /// <summary>Forgets the accepted tokens (a new sequence); the random generator goes on.</summary>
    public void Reset()
    {
        _recentCount = 0;
        _recentNext = 0;
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

        int v = logits.Length;
        bool penalize = _recentCount > 0;
        if (_options.Temperature == 0f && !penalize) return ArgMax(logits);
        if (_order.Length < v) { _order = new int[v]; _probabilities = new double[v]; _logits = new float[v]; }
        float[] copy = _logits;
        logits.CopyTo(copy);
        if (penalize) ApplyPenalties(copy.AsSpan(0, v));
        if (_options.Temperature == 0f) return ArgMax(copy.AsSpan(0, v));

        // Candidates: the top-k (unsorted), or every token.
        Span<int> order = _order.AsSpan(0, v);
        int candidates = _options.TopK > 0 && _options.TopK < v ? SelectTopK(copy, v, _options.TopK, order) : v;
        if (candidates == v) for (int i = 0; i < v; i++) order[i] = i;
        float maxLogit = float.NegativeInfinity;
        for (int i = 0; i < candidates; i++) maxLogit = Math.Max(maxLogit, copy[order[i]]);
        double max = maxLogit, temperature = _options.Temperature;

        // Min-p before sorting: p_i / p_max = exp((l_i − l_max)/T) ≥ min-p keeps a prefix of the sorted order,
        // so the dropped tokens only add their mass to the normalizer (top-p counts on the top-k distribution).
        int kept = candidates;
        double droppedMass = 0;
        if (_options.MinP > 0f)
        {
            kept = 0;
            for (int i = 0; i < candidates; i++)
            {
                int id = order[i];
                double relative = Math.Exp((copy[id] - max) / temperature);
                if (relative >= _options.MinP) { order[i] = order[kept]; order[kept++] = id; }
                else droppedMass += relative;
            }
        }
        // Sort the kept token ids by logit, descending (ties by id for determinism).
        order[..kept].Sort(new ByLogitDescending(copy));

        // p_i = exp((l_i − l_max)/T) / Σ, over the top-k tokens
        double sum = 0;
        Span<double> p = _probabilities.AsSpan(0, kept);
        for (int i = 0; i < kept; i++) { p[i] = Math.Exp((copy[order[i]] - max) / temperature); sum += p[i]; }
        sum += droppedMass;
        for (int i = 0; i < kept; i++) p[i] /= sum;
        int keep = kept;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += p[i];
                if (cumulative >= _options.TopP) { keep = i + 1; break; }
            }
        }
        if (_options.TopP < 1f || kept < candidates)
        {
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

    /// <summary>
    /// llama.cpp's penalties (<c>llama_sampler_penalties_apply</c>): each distinct token of the window with count c gets
    /// l ← l / r when l &gt; 0 else l · r (repetition penalty r), then l ← l − c · frequency − presence.
    /// </summary>
    private void ApplyPenalties(Span<float> logits)
    {
        int v = logits.Length;
        if (_counts.Length < v) _counts = new int[v];
        Span<int> recent = _recent.AsSpan(0, _recentCount);
        foreach (int token in recent) if (token < v) _counts[token]++;
        float repetition = _options.RepetitionPenalty, frequency = _options.FrequencyPenalty, presence = _options.PresencePenalty;
        foreach (int token in recent)
        {
            if (token >= v || _counts[token] == 0) continue;
            int count = _counts[token];
            _counts[token] = 0; // once per distinct token; leaves the counts zeroed for the next call
            float l = logits[token];
            l = l <= 0f ? l * repetition : l / repetition;
            logits[token] = l - count * frequency - presence;
        }
    }

    /// <summary>Writes the ids of the <paramref name="k"/> largest logits (ties: lower id first) into <paramref name="order"/>[..k], unsorted.</summary>
    private static int SelectTopK(float[] logits, int v, int k, Span<int> order)
    {
        // A heap of the best k so far, its worst at the root.
        Span<int> heap = order[..k];
        for (int i = 0; i < k; i++) heap[i] = i;
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(heap, i, logits);
        for (int id = k; id < v; id++)
        {
            if (!Better(id, heap[0], logits)) continue;
            heap[0] = id;
            SiftDown(heap, 0, logits);
        }
        return k;
    }

    private static void SiftDown(Span<int> heap, int i, float[] logits)
    {
        while (true)
        {
            int worst = i, left = 2 * i + 1, right = left + 1;
            if (left < heap.Length && Better(heap[worst], heap[left], logits)) worst = left;
            if (right < heap.Length && Better(heap[worst], heap[right], logits)) worst = right;
            if (worst == i) return;
            (heap[i], heap[worst]) = (heap[worst], heap[i]);
            i = worst;
        }
    }

    /// <summary>True when token <paramref name="a"/> ranks before <paramref name="b"/>: a larger logit, or the same and a lower id.</summary>
    private static bool Better(int a, int b, float[] logits) => logits[a] > logits[b] || (logits[a] == logits[b] && a < b);

    private readonly struct ByLogitDescending(float[] logits) : IComparer<int>
    {
        public int Compare(int a, int b) => logits[b] != logits[a] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b);
    }
}
