using System.Numerics.Tensors;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Per-conversation state of a <see cref="TransformerModel"/>: the KV cache, the positions of the
/// cached tokens and scratch buffers. Not thread-safe; the model it reads is.
/// </summary>
public sealed class InferenceContext
{
    private readonly TransformerModel _model;
    private readonly TransformerConfig _config;
    // Caches are head-major and transposed so attention runs over long contiguous slot vectors whatever the head size.
    private readonly float[][] _keyCache;   // per layer: (KvHeads, HeadDim, MaxSequenceLength)
    private readonly float[][] _valueCache; // per layer: (KvHeads, HeadDim, MaxSequenceLength)
    private readonly int[] _slotPosition;   // (MaxSequenceLength): model position of each cached token
    private readonly float[] _slotPositionValue; // (MaxSequenceLength): the same as floats, for ALiBi
    private int _maskedSlots;               // how many cached tokens are padding
    private readonly bool[] _slotMasked;    // (MaxSequenceLength): cached token is padding, never attended to
    private int _realTokens;                // non-padding tokens seen so far: the next default position

    // Grow-only scratch, sized for the largest chunk seen: rows = tokens in the chunk.
    private float[] _hidden = [];     // (n, HiddenSize) residual stream
    private float[] _normed = [];     // (n, max(HiddenSize, EmbeddingWidth))
    private float[] _query = [];      // (n, NumHeads·HeadDim)
    private float[] _key = [];        // (n, KvDim)
    private float[] _value = [];      // (n, KvDim)
    private float[] _attention = [];  // (n, NumHeads·HeadDim)
    private float[] _projected = [];  // (n, HiddenSize)
    private float[] _inner = [];      // (n, IntermediateSize)
    private float[] _gate = [];       // (n, IntermediateSize)
    private float[] _sigmoid = [];    // (n, IntermediateSize)
    private float[] _scores = [];     // (NumHeads, MaxSequenceLength) attention scores, one row per head
    private float[] _startAttention = []; // (NumHeads, n): A[h, i, 0], each query's attention to the start token
    private bool[] _lowBit = [];          // (n): token i uses the lower-bit activation width (mixed scheme)
    private int _lowBitCount;
    private float[] _gatherIn = [];       // (n, widest linear input): rows routed to one activation width
    private float[] _gatherOut = [];      // (n, widest linear output)

    internal InferenceContext(TransformerModel model)
    {
        _model = model;
        _config = model.Config;
        int slots = _config.MaxSequenceLength;
        if ((long)slots * _config.KvDim > Array.MaxLength)
            throw new AgileQuantException($"A KV cache of {slots} positions × {_config.KvDim} key/value width exceeds the largest array ({Array.MaxLength} elements); the context length is too large.");
        _keyCache = new float[_config.NumLayers][];
        _valueCache = new float[_config.NumLayers][];
        for (int l = 0; l < _config.NumLayers; l++)
        {
            _keyCache[l] = new float[(long)slots * _config.KvDim];
            _valueCache[l] = new float[(long)slots * _config.KvDim];
        }
        _slotPosition = new int[slots];
        _slotPositionValue = new float[slots];
        _slotMasked = new bool[slots];
    }

    /// <summary>The model this context runs.</summary>
    public TransformerModel Model => _model;

    /// <summary>Receives every linear layer's input during <see cref="Forward(ReadOnlySpan{int}, bool)"/> (calibration); null for none.</summary>
    public ILinearInputObserver? Observer { get; set; }

    /// <summary>Number of tokens held in the KV cache.</summary>
    public int Length { get; private set; }

    /// <summary>Empties the KV cache so the context can start a new sequence.</summary>
    public void Reset()
    {
        Length = 0;
        _realTokens = 0;
        _maskedSlots = 0;
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> through the model as one matrix (prefill, or decode when one token),
    /// appends them to the KV cache, and returns the logits of the last token (VocabSize) or, with
    /// <paramref name="allLogits"/>, of every token (tokens, VocabSize).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits = false) => Forward(tokens, allLogits, default, default);

    /// <summary>
    /// As <see cref="Forward(ReadOnlySpan{int}, bool)"/>, with explicit model positions per token (default: the
    /// count of non-padding tokens before it, as Hugging Face derives them from the attention mask) and an
    /// optional padding mask (true = padding: cached, but never attended to).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits, ReadOnlySpan<int> positions, ReadOnlySpan<bool> padding)
    {
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("At least one token is required.", nameof(tokens));
        if (!positions.IsEmpty && positions.Length != n) throw new ArgumentException($"Expected {n} positions, found {positions.Length}.", nameof(positions));
        if (!padding.IsEmpty && padding.Length != n) throw new ArgumentException($"Expected {n} padding flags, found {padding.Length}.", nameof(padding));
        if (Length + n > _config.MaxSequenceLength)
            throw new AgileQuantException($"The sequence would hold {Length + n} tokens ({Length} cached + {n} new), but the model's context length is {_config.MaxSequenceLength}.");
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)_config.VocabSize)
                throw new AgileQuantException($"Token id {tokens[i]} at index {i} is outside the vocabulary [0, {_config.VocabSize}).");

        int start = Length;
        for (int i = 0; i < n; i++)
        {
            bool pad = !padding.IsEmpty && padding[i];
            int position = positions.IsEmpty ? _realTokens : positions[i];
            if (position < 0) throw new ArgumentException($"Position {position} at index {i} is negative.", nameof(positions));
            if (_config.Positions == PositionKind.Learned && !pad)
            {
                long rows = _model.Weights.PositionEmbedding!.Length / _config.HiddenSize;
                if (position + _config.LearnedPositionOffset >= rows)
                    throw new AgileQuantException($"Position {position} is beyond the learned position table ({rows - _config.LearnedPositionOffset} positions).");
            }
            _slotPosition[start + i] = position;
            _slotPositionValue[start + i] = position;
            _slotMasked[start + i] = pad;
            if (pad) _maskedSlots++;
            else _realTokens++;
        }

        EnsureScratch(n);
        Embed(tokens, start, n);
        for (int layer = 0; layer < _config.NumLayers; layer++) RunLayer(layer, start, n);
        Length = start + n;
        return ComputeLogits(n, allLogits);
    }

    private void Embed(ReadOnlySpan<int> tokens, int start, int n)
    {
        TransformerWeights w = _model.Weights;
        int e = _config.EmbeddingWidth, d = _config.HiddenSize;
        Span<float> target = w.ProjectIn is null ? _hidden : _normed;
        for (int i = 0; i < n; i++) w.TokenEmbedding.AsSpan(tokens[i] * e, e).CopyTo(target.Slice(i * e, e));
        if (w.ProjectIn is not null) w.ProjectIn.Forward(_model.Kernel, _normed, _hidden, n);
        if (w.PositionEmbedding is not null)
            for (int i = 0; i < n; i++)
            {
                // OPT: padding tokens sit at position −1 → row offset−1, as Hugging Face's cumsum(mask)·mask − 1 gives
                int row = _slotMasked[start + i] ? _config.LearnedPositionOffset - 1 : _slotPosition[start + i] + _config.LearnedPositionOffset;
                Span<float> h = _hidden.AsSpan(i * d, d);
                TensorPrimitives.Add(h, w.PositionEmbedding.AsSpan(row * d, d), h);
            }
        w.EmbeddingNorm?.Forward(_hidden, _hidden, n);
    }

    private void RunLayer(int layer, int start, int n)
    {
        LayerWeights lw = _model.Weights.Layers[layer];
        int d = _config.HiddenSize, kv = _config.KvDim, q = _config.NumHeads * _config.HeadDim;
        Span<float> hidden = _hidden.AsSpan(0, n * d);

        // Attention block: x = x + O(attn(norm(x)))  (post-LN: x = norm(x + O(attn(x))))
        ReadOnlySpan<float> attnInput = hidden;
        if (_config.PreNorm)
        {
            lw.AttentionNorm.Forward(hidden, _normed, n);
            attnInput = _normed.AsSpan(0, n * d);
        }
        Observer?.Observe(layer, LinearSlot.QueryKeyValue, attnInput, n);
        RunLinear(lw.Query, attnInput, _query, n, mixed: false);
        RunLinear(lw.Key, attnInput, _key, n, mixed: false);
        RunLinear(lw.Value, attnInput, _value, n, mixed: false);
        AttentionQuantization aq = _model.Options.Attention;
        if (aq.QkvBits > 0)
        {
            ActivationRounding.RoundRows(_query.AsSpan(0, n * q), n, aq.QkvBits);
            ActivationRounding.RoundRows(_key.AsSpan(0, n * kv), n, aq.QkvBits);
            ActivationRounding.RoundRows(_value.AsSpan(0, n * kv), n, aq.QkvBits);
        }
        if (_model.Rotary is not null)
            for (int i = 0; i < n; i++)
            {
                int position = _slotPosition[start + i];
                _model.Rotary.Apply(_query.AsSpan(i * q, q), position);
                _model.Rotary.Apply(_key.AsSpan(i * kv, kv), position);
            }
        if (aq.KvCacheBits > 0)
        {
            // one scale per token and key/value head
            ActivationRounding.RoundRows(_key.AsSpan(0, n * kv), n * _config.NumKvHeads, aq.KvCacheBits);
            ActivationRounding.RoundRows(_value.AsSpan(0, n * kv), n * _config.NumKvHeads, aq.KvCacheBits);
        }
        StoreTransposed(_key, _keyCache[layer], start, n);
        StoreTransposed(_value, _valueCache[layer], start, n);
        Attend(layer, start, n);
        SelectLowBitTokens(start, n);
        Observer?.Observe(layer, LinearSlot.AttentionOutput, _attention.AsSpan(0, n * q), n);
        RunLinear(lw.Output, _attention, _projected, n, mixed: true);
        TensorPrimitives.Add(hidden, _projected.AsSpan(0, n * d), hidden);
        if (!_config.PreNorm) lw.AttentionNorm.Forward(hidden, hidden, n);

        // MLP block: x = x + mlp(norm(x))  (post-LN: x = norm(x + mlp(x)))
        ReadOnlySpan<float> mlpInput = hidden;
        if (_config.PreNorm)
        {
            lw.MlpNorm.Forward(hidden, _normed, n);
            mlpInput = _normed.AsSpan(0, n * d);
        }
        int f = _config.IntermediateSize;
        Span<float> inner = _inner.AsSpan(0, n * f);
        Observer?.Observe(layer, LinearSlot.MlpInput, mlpInput, n);
        RunLinear(lw.Up, mlpInput, inner, n, mixed: true);
        switch (_config.Mlp)
        {
            case MlpKind.SwiGlu:
                // inner = silu(gate) · up, silu(g) = g · σ(g)
                Span<float> gate = _gate.AsSpan(0, n * f);
                Span<float> sigmoid = _sigmoid.AsSpan(0, n * f);
                RunLinear(lw.Gate!, mlpInput, gate, n, mixed: true);
                TensorPrimitives.Sigmoid(gate, sigmoid);
                TensorPrimitives.Multiply(gate, sigmoid, gate);
                TensorPrimitives.Multiply(gate, inner, inner);
                break;
            case MlpKind.Relu:
                TensorPrimitives.Max(inner, 0f, inner);
                break;
            case MlpKind.GeluTanh:
                ActivationFunctions.GeluTanh(inner);
                break;
            case MlpKind.GeluErf:
                ActivationFunctions.GeluErf(inner);
                break;
        }
        Observer?.Observe(layer, LinearSlot.MlpDown, inner, n);
        RunLinear(lw.Down, inner, _projected, n, mixed: true);
        TensorPrimitives.Add(hidden, _projected.AsSpan(0, n * d), hidden);
        if (!_config.PreNorm) lw.MlpNorm.Forward(hidden, hidden, n);
    }

    // cache[c, s] (KvDim, MaxSequenceLength) ← rows[i, c] (n, KvDim) for slots s = start + i
    private void StoreTransposed(float[] rows, float[] cache, int start, int n)
    {
        int kv = _config.KvDim, slots = _config.MaxSequenceLength;
        for (int c = 0; c < kv; c++)
        {
            Span<float> target = cache.AsSpan(c * slots + start, n);
            for (int i = 0; i < n; i++) target[i] = rows[i * kv + c];
        }
    }

    // attn[i, h] = Σ_j softmax_j(q[i,h]·k[j,h']/√d + slope_h·pos_j) · v[j, h'], j over unmasked cached tokens up to i
    private void Attend(int layer, int start, int n)
    {
        int heads = _config.NumHeads;
        _collectStartAttention = n > 2 && _model.Options.LowBitTokenRatio > 0;
        if (n == 1 || heads == 1)
            for (int h = 0; h < heads; h++) AttendHead(layer, start, n, h);
        else
            Parallel.For(0, heads, h => AttendHead(layer, start, n, h));
    }

    private bool _collectStartAttention;

    private void AttendHead(int layer, int start, int n, int head)
    {
        int hd = _config.HeadDim, q = _config.NumHeads * hd, slots = _config.MaxSequenceLength;
        int kvHead = head / (_config.NumHeads / _config.NumKvHeads);
        float scale = 1f / MathF.Sqrt(hd);
        float[] keys = _keyCache[layer], values = _valueCache[layer];
        for (int i = 0; i < n; i++)
        {
            int visible = start + i + 1; // causal: cached tokens 0..start+i
            ReadOnlySpan<float> query = _query.AsSpan(i * q + head * hd, hd);
            Span<float> output = _attention.AsSpan(i * q + head * hd, hd);
            Span<float> scores = _scores.AsSpan(head * slots, visible);
            // scores[j] = Σ_d q[d] · K[d, j], as hd AXPYs over the slot axis
            scores.Clear();
            for (int d = 0; d < hd; d++)
                TensorPrimitives.MultiplyAdd(keys.AsSpan(((kvHead * hd) + d) * slots, visible), query[d], scores, scores);
            TensorPrimitives.Multiply(scores, scale, scores);
            if (_model.AlibiSlopes is not null)
                TensorPrimitives.MultiplyAdd(_slotPositionValue.AsSpan(0, visible), _model.AlibiSlopes[head], scores, scores);
            if (_maskedSlots > 0 && !MaskPadding(scores))
            {
                output.Clear(); // every visible key is padding: no attention
                continue;
            }
            // softmax, shifted by the maximum for stability
            float max = TensorPrimitives.Max(scores);
            TensorPrimitives.Subtract(scores, max, scores);
            TensorPrimitives.Exp(scores, scores);
            TensorPrimitives.Multiply(scores, 1f / TensorPrimitives.Sum(scores), scores);
            if (_collectStartAttention) _startAttention[head * n + i] = _slotMasked[0] ? 0f : scores[0];
            if (_model.Options.Attention.Log2Softmax) ActivationRounding.RoundToPowersOfTwo(scores);
            // out[d] = Σ_j p[j] · V[d, j]
            for (int d = 0; d < hd; d++)
                output[d] = TensorPrimitives.Dot(scores, values.AsSpan(((kvHead * hd) + d) * slots, visible));
        }
    }

    /// <summary>Sets padding slots' scores to −∞; returns false when every visible slot is padding.</summary>
    private bool MaskPadding(Span<float> scores)
    {
        bool anyVisible = false;
        for (int j = 0; j < scores.Length; j++)
        {
            if (_slotMasked[j]) scores[j] = float.NegativeInfinity;
            else anyVisible = true;
        }
        return anyVisible;
    }

    /// <summary>
    /// Marks the floor(ratio·n) tokens with the least attention to the start token (summed over heads) as
    /// lower-bit, never the start token or the last one; none during decode.
    /// </summary>
    private void SelectLowBitTokens(int start, int n)
    {
        _lowBitCount = 0;
        if (!_collectStartAttention) return;
        Array.Clear(_lowBit, 0, n);
        int count = (int)Math.Floor(_model.Options.LowBitTokenRatio * n);
        int heads = _config.NumHeads;
        var candidates = new List<(float Score, int Token)>(n);
        for (int i = 0; i < n - 1; i++)
        {
            if (start + i == 0) continue;
            float score = 0;
            for (int h = 0; h < heads; h++) score += _startAttention[h * n + i];
            candidates.Add((score, i));
        }
        candidates.Sort((a, b) => a.Score != b.Score ? a.Score.CompareTo(b.Score) : a.Token.CompareTo(b.Token));
        for (int k = 0; k < Math.Min(count, candidates.Count); k++) _lowBit[candidates[k].Token] = true;
        _lowBitCount = Math.Min(count, candidates.Count);
    }

    /// <summary>y = x·Wᵀ + b through the kernel for the layer's activation width; lower-bit tokens (mixed scheme) go through the 4-bit kernel.</summary>
    private void RunLinear(LinearLayer linear, ReadOnlySpan<float> x, Span<float> y, int n, bool mixed)
    {
        if (!mixed || linear.LowBitActivationBits == 0 || _lowBitCount == 0)
        {
            linear.Forward(_model.KernelForBits(linear.ActivationBits)!, x, y, n);
            return;
        }
        int inF = linear.InFeatures, outF = linear.OutFeatures;
        foreach (bool lowBit in new[] { true, false })
        {
            int rows = 0;
            for (int i = 0; i < n; i++)
                if (_lowBit[i] == lowBit) x.Slice(i * inF, inF).CopyTo(_gatherIn.AsSpan(rows++ * inF, inF));
            if (rows == 0) continue;
            int bits = lowBit ? linear.LowBitActivationBits : linear.ActivationBits;
            linear.Forward(_model.KernelForBits(bits)!, _gatherIn, _gatherOut, rows);
            rows = 0;
            for (int i = 0; i < n; i++)
                if (_lowBit[i] == lowBit) _gatherOut.AsSpan(rows++ * outF, outF).CopyTo(y.Slice(i * outF, outF));
        }
    }

    private float[] ComputeLogits(int n, bool allLogits)
    {
        TransformerWeights w = _model.Weights;
        int d = _config.HiddenSize, e = _config.EmbeddingWidth, v = _config.VocabSize;
        int first = allLogits ? 0 : n - 1, rows = n - first;
        Span<float> last = _hidden.AsSpan(first * d, rows * d);
        if (w.FinalNorm is not null) w.FinalNorm.Forward(last, _normed, rows);
        else last.CopyTo(_normed);
        ReadOnlySpan<float> headInput = _normed.AsSpan(0, rows * d);
        if (w.ProjectOut is not null)
        {
            w.ProjectOut.Forward(_model.Kernel, headInput, _projected, rows);
            headInput = _projected.AsSpan(0, rows * e);
        }
        float[] logits = new float[(long)rows * v];
        w.LmHead.Forward(_model.Kernel, headInput, logits, rows);
        return logits;
    }

    private void EnsureScratch(int n)
    {
        int d = _config.HiddenSize, q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim, f = _config.IntermediateSize;
        int wide = Math.Max(d, _config.EmbeddingWidth);
        Grow(ref _hidden, n * d);
        Grow(ref _normed, n * wide);
        Grow(ref _query, n * q);
        Grow(ref _key, n * kv);
        Grow(ref _value, n * kv);
        Grow(ref _attention, n * q);
        Grow(ref _projected, n * wide);
        Grow(ref _inner, n * f);
        if (_config.Mlp == MlpKind.SwiGlu)
        {
            Grow(ref _gate, n * f);
            Grow(ref _sigmoid, n * f);
        }
        Grow(ref _scores, _config.NumHeads * _config.MaxSequenceLength);
        Grow(ref _startAttention, _config.NumHeads * n);
        if (_lowBit.Length < n) _lowBit = new bool[n];
        if (_model.Options.LowBitTokenRatio > 0)
        {
            int widest = Math.Max(Math.Max(d, q), f);
            Grow(ref _gatherIn, n * widest);
            Grow(ref _gatherOut, n * widest);
        }
    }

    private static void Grow(ref float[] buffer, long length)
    {
        if (buffer.LongLength < length) buffer = new float[length];
    }
}
