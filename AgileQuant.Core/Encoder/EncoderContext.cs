using System.Numerics.Tensors;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// Runs one token sequence at a time through an <see cref="EncoderModel"/> with bidirectional attention, optionally
/// pruning tokens layer by layer (the model's <see cref="RuntimeOptions.Pruning"/> schedule; the first token, [CLS], is the
/// start token and is never pruned, nor is the last, [SEP]). Holds scratch buffers; not thread-safe.
/// </summary>
public sealed class EncoderContext
{
    private readonly EncoderModel _model;
    private readonly EncoderConfig _config;
    private readonly TokenPruner _pruner = new();
    private int[] _survivors = [];

    // Grow-only scratch; n = tokens of the sequence.
    private float[] _hidden = [];     // (n, d) residual stream
    private float[] _query = [];      // (n, d)
    private float[] _key = [];        // (n, d)
    private float[] _value = [];      // (n, d)
    private float[] _keyT = [];       // (d, n) keys transposed: head h's rows h·hd..(h+1)·hd−1
    private float[] _valueT = [];     // (d, n)
    private float[] _attention = [];  // (n, d)
    private float[] _projected = [];  // (n, d)
    private float[] _inner = [];      // (n, IntermediateSize)
    private float[] _smoothed = [];   // (n, widest linear input) scaled inputs
    private float[] _geluU = [];      // (n, IntermediateSize) GELU scratch
    private float[] _geluT = [];      // (n, IntermediateSize) GELU scratch
    private float[] _scores = [];     // (heads, n) one score row per head
    private float[] _startAttention = []; // (heads, n): A[h, i, 0]
    private float[] _tokenScores = [];    // (n)

    internal EncoderContext(EncoderModel model)
    {
        _model = model;
        _config = model.Config;
    }

    /// <summary>The model this context runs.</summary>
    public EncoderModel Model => _model;

    /// <summary>Receives every linear input during <see cref="Encode"/> (e.g. GPTQ calibration); null for none.</summary>
    public ILinearInputObserver? Observer { get; set; }

    /// <summary>Indices (into the last <see cref="Encode"/>'s tokens) of the tokens that survived every pruning layer, ascending.</summary>
    public IReadOnlyList<int> SurvivingTokenIndices => _survivors;

    /// <summary>
    /// Runs <paramref name="tokens"/> (token type 0, positions 0..n−1) through every layer and returns the last hidden
    /// state of each surviving token (<see cref="SurvivingTokenIndices"/>, HiddenSize), row-major.
    /// </summary>
    /// <exception cref="AgileQuantException">A token id is outside the vocabulary or the sequence is longer than the position table.</exception>
    public float[] Encode(ReadOnlySpan<int> tokens)
    {
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("At least one token is required.", nameof(tokens));
        if (n > _config.MaxPositions)
            throw new AgileQuantException($"The sequence has {n} tokens, but the encoder's position table holds {_config.MaxPositions}.");
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)_config.VocabSize)
                throw new AgileQuantException($"Token id {tokens[i]} at index {i} is outside the vocabulary [0, {_config.VocabSize}).");
        EnsureScratch(n);
        EmbedTokens(tokens);
        _pruner.Begin(n, firstIsStart: true);
        for (int layer = 0; layer < _config.NumLayers; layer++) n = RunLayer(layer, n);
        _survivors = _pruner.OriginalIndices.ToArray();
        return _hidden.AsSpan(0, n * _config.HiddenSize).ToArray();
    }

    /// <summary>
    /// The sentence embedding of all-MiniLM-L6-v2 / sentence-transformers: the mean of the surviving tokens' last hidden
    /// states, L2-normalised: <c>e = m / max(‖m‖₂, 1e−12)</c>, <c>m = (1/n) Σ_i h_i</c>.
    /// </summary>
    public float[] Embed(ReadOnlySpan<int> tokens)
    {
        float[] hidden = Encode(tokens);
        var embedding = new float[_config.HiddenSize];
        SentencePooling.MeanPool(hidden, _survivors.Length, embedding);
        SentencePooling.Normalize(embedding);
        return embedding;
    }

    // h[i] = E_tok[id_i] + E_pos[i] + E_type[0], then LayerNorm
    private void EmbedTokens(ReadOnlySpan<int> tokens)
    {
        EncoderWeights w = _model.Weights;
        int d = _config.HiddenSize;
        ReadOnlySpan<float> type0 = w.TokenTypeEmbedding.AsSpan(0, d);
        for (int i = 0; i < tokens.Length; i++)
        {
            Span<float> h = _hidden.AsSpan(i * d, d);
            TensorPrimitives.Add(w.TokenEmbedding.AsSpan(tokens[i] * d, d), w.PositionEmbedding.AsSpan(i * d, d), h);
            TensorPrimitives.Add(h, type0, h);
        }
        w.EmbeddingNorm.Forward(_hidden, _hidden, tokens.Length);
    }

    /// <summary>Runs layer <paramref name="layer"/> over <paramref name="n"/> rows; returns the rows left after pruning.</summary>
    private int RunLayer(int layer, int n)
    {
        LayerWeights lw = _model.Weights.Layers[layer];
        int d = _config.HiddenSize;
        Span<float> hidden = _hidden.AsSpan(0, n * d);

        // x = LN(x + O(attn(x)))
        ReadOnlySpan<float> qkvInput = Smoothed(layer, LinearSlot.QueryKeyValue, hidden, n);
        Observer?.Observe(layer, LinearSlot.QueryKeyValue, qkvInput, n);
        Linear(lw.Query, qkvInput, _query, n);
        Linear(lw.Key, qkvInput, _key, n);
        Linear(lw.Value, qkvInput, _value, n);
        AttentionQuantization aq = _model.Options.Attention;
        if (aq.QkvBits > 0)
        {
            ActivationRounding.RoundRows(_query.AsSpan(0, n * d), n, aq.QkvBits);
            ActivationRounding.RoundRows(_key.AsSpan(0, n * d), n, aq.QkvBits);
            ActivationRounding.RoundRows(_value.AsSpan(0, n * d), n, aq.QkvBits);
        }
        if (aq.KvCacheBits > 0)
        {
            // one scale per token and head, as the decoder's KV cache
            ActivationRounding.RoundRows(_key.AsSpan(0, n * d), n * _config.NumHeads, aq.KvCacheBits);
            ActivationRounding.RoundRows(_value.AsSpan(0, n * d), n * _config.NumHeads, aq.KvCacheBits);
        }
        Transpose(_key, _keyT, n);
        Transpose(_value, _valueT, n);
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        double ratio = schedule?.RatioAt(layer) ?? 0;
        bool prunes = ratio > 0 && n > 2;
        Attend(n, prunes);
        if (prunes) SelectTokens(layer, n, ratio, schedule!.Direction);
        ReadOnlySpan<float> attention = Smoothed(layer, LinearSlot.AttentionOutput, _attention.AsSpan(0, n * d), n);
        Observer?.Observe(layer, LinearSlot.AttentionOutput, attention, n);
        Linear(lw.Output, attention, _projected, n);
        TensorPrimitives.Add(hidden, _projected.AsSpan(0, n * d), hidden);
        lw.AttentionNorm.Forward(hidden, hidden, n);
        if (_pruner.PrunedCount > 0)
        {
            n = DropPrunedRows(n);
            hidden = _hidden.AsSpan(0, n * d);
        }

        // x = LN(x + fc2(gelu_erf(fc1(x))))
        int f = _config.IntermediateSize;
        Span<float> inner = _inner.AsSpan(0, n * f);
        ReadOnlySpan<float> mlpInput = Smoothed(layer, LinearSlot.MlpInput, hidden, n);
        Observer?.Observe(layer, LinearSlot.MlpInput, mlpInput, n);
        Linear(lw.Up, mlpInput, inner, n);
        GeluErfApproximation.Apply(inner, _geluU, _geluT);
        ReadOnlySpan<float> downInput = Smoothed(layer, LinearSlot.MlpDown, inner, n);
        Observer?.Observe(layer, LinearSlot.MlpDown, downInput, n);
        Linear(lw.Down, downInput, _projected, n);
        TensorPrimitives.Add(hidden, _projected.AsSpan(0, n * d), hidden);
        lw.MlpNorm.Forward(hidden, hidden, n);
        return n;
    }

    /// <summary>x (n, width) multiplied per channel by the layer's input scales for <paramref name="slot"/>, or x itself without smoothing.</summary>
    private ReadOnlySpan<float> Smoothed(int layer, LinearSlot slot, ReadOnlySpan<float> x, int n)
    {
        if (_model.Weights.InputScales is not { } all) return x;
        float[] scales = all[layer].For(slot);
        int width = scales.Length;
        Grow(ref _smoothed, n * width);
        // x'[i, c] = x[i, c] · (1/s_c)
        for (int i = 0; i < n; i++) TensorPrimitives.Multiply(x.Slice(i * width, width), scales, _smoothed.AsSpan(i * width, width));
        return _smoothed.AsSpan(0, n * width);
    }

    private void Linear(LinearLayer linear, ReadOnlySpan<float> x, Span<float> y, int n) =>
        linear.Forward(_model.KernelForBits(linear.ActivationBits)!, x, y, n);

    // t[c, i] (d, n) ← rows[i, c] (n, d)
    private void Transpose(float[] rows, float[] t, int n)
    {
        int d = _config.HiddenSize;
        for (int c = 0; c < d; c++)
        {
            Span<float> target = t.AsSpan(c * n, n);
            for (int i = 0; i < n; i++) target[i] = rows[i * d + c];
        }
    }

    // attn[i, h] = Σ_j softmax_j(q[i,h]·k[j,h]/√hd) · v[j,h], j over all n tokens (bidirectional)
    private void Attend(int n, bool collectStart)
    {
        int heads = _config.NumHeads;
        if (heads == 1 || n < 8)
            for (int h = 0; h < heads; h++) AttendHead(n, h, collectStart);
        else
            Parallel.For(0, heads, h => AttendHead(n, h, collectStart));
    }

    private void AttendHead(int n, int head, bool collectStart)
    {
        int hd = _config.HeadDim, d = _config.HiddenSize;
        float scale = 1f / MathF.Sqrt(hd);
        Span<float> scores = _scores.AsSpan(head * n, n);
        ReadOnlySpan<float> keys = _keyT.AsSpan(head * hd * n, hd * n);     // (hd, n)
        ReadOnlySpan<float> values = _valueT.AsSpan(head * hd * n, hd * n); // (hd, n)
        bool log2 = _model.Options.Attention.Log2Softmax;
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<float> query = _query.AsSpan(i * d + head * hd, hd);
            // scores[j] = Σ_c q[c] · K[c, j], as hd AXPYs over the token axis
            scores.Clear();
            for (int c = 0; c < hd; c++) TensorPrimitives.MultiplyAdd(keys.Slice(c * n, n), query[c], scores, scores);
            TensorPrimitives.Multiply(scores, scale, scores);
            // softmax, shifted by the maximum for stability
            float max = TensorPrimitives.Max(scores);
            TensorPrimitives.Subtract(scores, max, scores);
            TensorPrimitives.Exp(scores, scores);
            TensorPrimitives.Multiply(scores, 1f / TensorPrimitives.Sum(scores), scores);
            if (collectStart) _startAttention[head * n + i] = scores[0];
            if (log2) ActivationRounding.RoundToPowersOfTwo(scores);
            Span<float> output = _attention.AsSpan(i * d + head * hd, hd);
            // out[c] = Σ_j p[j] · V[c, j]
            for (int c = 0; c < hd; c++) output[c] = TensorPrimitives.Dot(scores, values.Slice(c * n, n));
        }
    }

    private void SelectTokens(int layer, int n, double ratio, PruningDirection direction)
    {
        Span<float> scores = _tokenScores.AsSpan(0, n);
        if (_model.Scoring == TokenScoring.Random)
        {
            // a fixed seed per (model seed, layer, length): the same sentence prunes the same rows every run
            var random = new Random(unchecked(_model.ScoringSeed * 1_000_003 + layer * 7919 + n));
            for (int i = 0; i < n; i++) scores[i] = random.NextSingle();
        }
        else TokenPruner.ComputeScores(_startAttention, _config.NumHeads, n, scores);
        _pruner.Select(scores, ratio, 0, direction);
    }

    /// <summary>Compacts the residual stream to the rows the pruner keeps; returns their count.</summary>
    private int DropPrunedRows(int n)
    {
        int d = _config.HiddenSize;
        _pruner.Compact();
        ReadOnlySpan<int> kept = _pruner.KeptRows;
        // rows only move towards the front (kept[k] ≥ k), so ascending copies never overwrite a row still needed
        for (int k = 0; k < kept.Length; k++)
            if (kept[k] != k) _hidden.AsSpan(kept[k] * d, d).CopyTo(_hidden.AsSpan(k * d, d));
        return kept.Length;
    }

    private void EnsureScratch(int n)
    {
        int d = _config.HiddenSize;
        Grow(ref _hidden, n * d);
        Grow(ref _query, n * d);
        Grow(ref _key, n * d);
        Grow(ref _value, n * d);
        Grow(ref _keyT, n * d);
        Grow(ref _valueT, n * d);
        Grow(ref _attention, n * d);
        Grow(ref _projected, n * d);
        Grow(ref _inner, n * _config.IntermediateSize);
        Grow(ref _geluU, n * _config.IntermediateSize);
        Grow(ref _geluT, n * _config.IntermediateSize);
        Grow(ref _scores, _config.NumHeads * n);
        Grow(ref _startAttention, _config.NumHeads * n);
        Grow(ref _tokenScores, n);
    }

    private static void Grow(ref float[] buffer, int length)
    {
        if (buffer.Length < length) buffer = new float[length];
    }
}
