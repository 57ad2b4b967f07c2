using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using AgileQuant.Core.Pruning;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Per-conversation state of a <see cref="TransformerModel"/>: the KV cache, the positions of the
/// cached tokens and scratch buffers. Not thread-safe; the model it reads is.
/// </summary>
/// <remarks>
/// With a <see cref="RuntimeOptions.Pruning"/> schedule, prefill drops tokens layer by layer, so each layer's
/// cache holds only the tokens that reached it (<see cref="LayerLength"/>), each with its own positions
/// (<see cref="PrunedPositions"/>). Decode appends one token to every layer's cache.
/// </remarks>
public sealed class InferenceContext
{
    private readonly TransformerModel _model;
    private readonly TransformerConfig _config;
    // Caches are head-major and transposed so attention runs over long contiguous slot vectors whatever the head size.
    // Slots past the cached tokens, up to the next whole vector, stay zero: attention tiles read whole vectors.
    // They grow with the sequence (EnsureCacheSlots), so a context holds memory for the tokens it has seen, not the whole context length.
    private readonly float[][] _keyCache;   // per layer: (KvHeads, HeadDim, _slotStride)
    private readonly float[][] _valueCache; // per layer: (KvHeads, HeadDim, _slotStride)
    private int _slotStride;                // SlotStride(slots allocated): whole vectors, an odd number of cache lines
    private readonly int[][] _slotPosition;   // per layer: (MaxSequenceLength) model position of each cached token
    private readonly float[][] _slotPositionValue; // per layer: (MaxSequenceLength) the same as floats, for ALiBi
    private readonly bool[][] _slotMasked;    // per layer: (MaxSequenceLength) cached token is padding, never attended to
    private readonly int[] _layerLength;      // (NumLayers): tokens cached in each layer
    private readonly int[] _layerMaskedSlots; // (NumLayers): how many of them are padding
    private readonly int[] _layerRealTokens;  // (NumLayers): how many are not: the layer's next renumbered position
    private int _realTokens;                  // non-padding tokens fed so far: the next default position
    private readonly TokenPruner _pruner = new(); // rows of the current chunk: survivors and lower-bit flags
    private int[] _survivors = [];            // original indices of the last forward's surviving tokens

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
    private float[] _scores = [];     // (threads, AttentionTiles.TileRows, _slotStride) scores, then probabilities, of each attention thread's query tile
    private float[] _startAttention = []; // (NumHeads, n): A[h, i, 0], each query's attention to the start token
    private float[] _tokenScores = [];    // (n): s_i = Σ_h A[h, i, 0]
    private int[] _tokenPosition = [];    // (n): model position of each row in the current layer
    private bool[] _tokenMasked = [];     // (n): row is padding
    private float[] _gatherIn = [];       // (n, widest linear input): rows routed to one activation width
    private float[] _gatherOut = [];      // (n, widest linear output)
    private int[] _tripRows = [];         // (n): rows a TRIP pass gathers
    private float[] _rotations = [];      // (positions cached, 2·HeadDim): each position's RotaryEmbedding.FillRotation, computed once per context
    private bool[] _rotationReady = [];   // (positions cached): its rotation is filled
    private readonly int _threads;        // threads of the model's kernel, for TRIP passes

    internal InferenceContext(TransformerModel model)
    {
        _model = model;
        _config = model.Config;
        int slots = _config.MaxSequenceLength;
        if ((long)SlotStride(slots) * _config.KvDim > Array.MaxLength)
            throw new AgileQuantException($"A KV cache of {slots} positions × {_config.KvDim} key/value width exceeds the largest array ({Array.MaxLength} elements); the context length is too large.");
        _keyCache = new float[_config.NumLayers][];
        _valueCache = new float[_config.NumLayers][];
        for (int l = 0; l < _config.NumLayers; l++)
        {
            _keyCache[l] = [];
            _valueCache[l] = [];
        }
        int layers = _config.NumLayers;
        _slotPosition = new int[layers][];
        _slotPositionValue = new float[layers][];
        _slotMasked = new bool[layers][];
        for (int l = 0; l < layers; l++)
        {
            _slotPosition[l] = new int[slots];
            _slotPositionValue[l] = new float[slots];
            _slotMasked[l] = new bool[slots];
        }
        _layerLength = new int[layers];
        _layerMaskedSlots = new int[layers];
        _layerRealTokens = new int[layers];
        _threads = model.Kernel is KernelSet set ? set.Threads : 1;
    }

    /// <summary>The model this context runs.</summary>
    public TransformerModel Model => _model;

    /// <summary>Receives every linear layer's input during <see cref="Forward(ReadOnlySpan{int}, bool)"/> (calibration); null for none.</summary>
    public ILinearInputObserver? Observer { get; set; }

    /// <summary>Number of tokens fed so far (held in the first layer's KV cache; later layers may hold fewer after pruning).</summary>
    public int Length { get; private set; }

    /// <summary>Number of tokens held in <paramref name="layer"/>'s KV cache: those not pruned before that layer.</summary>
    public int LayerLength(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, _config.NumLayers);
        return _layerLength[layer];
    }

    /// <summary>
    /// Indices (into the tokens of the last <see cref="Forward(ReadOnlySpan{int}, bool)"/>) of the tokens that
    /// survived every pruning layer, ascending; their rows are what <c>allLogits</c> returns. All indices without pruning.
    /// </summary>
    public IReadOnlyList<int> SurvivingTokenIndices => _survivors;

    /// <summary>Empties the KV cache so the context can start a new sequence.</summary>
    public void Reset()
    {
        Length = 0;
        _realTokens = 0;
        Array.Clear(_layerLength);
        Array.Clear(_layerMaskedSlots);
        Array.Clear(_layerRealTokens);
        _survivors = [];
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> through the model as one matrix (prefill, or decode when one token),
    /// appends them to the KV cache, and returns the logits of the last token (VocabSize) or, with
    /// <paramref name="allLogits"/>, of every surviving token (<see cref="SurvivingTokenIndices"/>, VocabSize):
    /// every token unless <see cref="RuntimeOptions.Pruning"/> prunes some during prefill.
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
        EnsureCacheSlots(start + n);
        EnsureScratch(n);
        int realInChunk = 0;
        for (int i = 0; i < n; i++)
        {
            bool pad = !padding.IsEmpty && padding[i];
            int position = positions.IsEmpty ? _realTokens + realInChunk : positions[i];
            if (position < 0) throw new ArgumentException($"Position {position} at index {i} is negative.", nameof(positions));
            if (_config.Positions == PositionKind.Learned && !pad)
            {
                long rows = _model.Weights.PositionEmbedding!.Length / _config.HiddenSize;
                if (position + _config.LearnedPositionOffset >= rows)
                    throw new AgileQuantException($"Position {position} is beyond the learned position table ({rows - _config.LearnedPositionOffset} positions).");
            }
            _tokenPosition[i] = position;
            _tokenMasked[i] = pad;
            if (!pad) realInChunk++;
        }
        _realTokens += realInChunk;

        Embed(tokens, n);
        _pruner.Begin(n, firstIsStart: start == 0);
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        // Renumbered: default positions are each layer's own count; explicit positions hold until the first pruning.
        bool renumber = schedule is { Positions: PrunedPositions.Renumbered } && positions.IsEmpty;
        int remaining = n;
        for (int layer = 0; layer < _config.NumLayers; layer++)
        {
            int before = remaining;
            remaining = RunLayer(layer, remaining, renumber);
            if (remaining < before && schedule is { Positions: PrunedPositions.Renumbered }) renumber = true;
        }
        Length = start + n;
        _survivors = _pruner.OriginalIndices.ToArray();
        return ComputeLogits(remaining, allLogits);
    }

    private void Embed(ReadOnlySpan<int> tokens, int n)
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
                int row = _tokenMasked[i] ? _config.LearnedPositionOffset - 1 : _tokenPosition[i] + _config.LearnedPositionOffset;
                Span<float> h = _hidden.AsSpan(i * d, d);
                TensorPrimitives.Add(h, w.PositionEmbedding.AsSpan(row * d, d), h);
            }
        w.EmbeddingNorm?.Forward(_hidden, _hidden, n);
    }

    /// <summary>Runs decoder layer <paramref name="layer"/> over the chunk's <paramref name="n"/> rows; returns the rows left after pruning.</summary>
    private int RunLayer(int layer, int n, bool renumber)
    {
        int start = _layerLength[layer];
        if (renumber)
        {
            int next = _layerRealTokens[layer];
            for (int i = 0; i < n; i++)
                if (!_tokenMasked[i]) _tokenPosition[i] = next++;
        }
        for (int i = 0; i < n; i++)
        {
            _slotPosition[layer][start + i] = _tokenPosition[i];
            _slotPositionValue[layer][start + i] = _tokenPosition[i];
            _slotMasked[layer][start + i] = _tokenMasked[i];
            if (_tokenMasked[i]) _layerMaskedSlots[layer]++;
            else _layerRealTokens[layer]++;
        }
        _layerLength[layer] = start + n;

        LayerWeights lw = _model.Weights.Layers[layer];
        int d = _config.HiddenSize, kv = _config.KvDim, q = _config.NumHeads * _config.HeadDim;
        Span<float> hidden = _hidden.AsSpan(0, n * d);

        // Attention block: x = x + O(attn(norm(x)))  (post-LN: x = norm(x + O(attn(x))))
        ReadOnlySpan<float> attnInput = hidden;
        if (_config.PreNorm)
        {
            AddResidualAndNormalize(null, lw.AttentionNorm, _normed, n);
            attnInput = _normed.AsSpan(0, n * d);
        }
        Observer?.Observe(layer, LinearSlot.QueryKeyValue, attnInput, n);
        RunLinear(lw.Query, attnInput, _query, n, mixed: false);
        RunLinear(lw.Key, attnInput, _key, n, mixed: false);
        RunLinear(lw.Value, attnInput, _value, n, mixed: false);
        RoundRotateAndCache(layer, start, n);
        Attend(layer, start, n);
        SelectTokens(layer, n);
        Observer?.Observe(layer, LinearSlot.AttentionOutput, _attention.AsSpan(0, n * q), n);
        // rows pruned here leave after the residual add, which is per row: drop them now and skip their output projection
        if (_pruner.PrunedCount > 0)
        {
            n = DropPrunedRows(n);
            hidden = _hidden.AsSpan(0, n * d);
        }
        RunLinear(lw.Output, _attention, _projected, n, mixed: true);
        // pre-LN: x += O(…), then the MLP's input norm(x); post-LN: x = norm(x + O(…))
        AddResidualAndNormalize(_projected, _config.PreNorm ? lw.MlpNorm : lw.AttentionNorm, _config.PreNorm ? _normed : _hidden, n);

        // MLP block: x = x + mlp(norm(x))  (post-LN: x = norm(x + mlp(x)))
        ReadOnlySpan<float> mlpInput = _config.PreNorm ? _normed.AsSpan(0, n * d) : hidden;
        int f = _config.IntermediateSize;
        Span<float> inner = _inner.AsSpan(0, n * f);
        Observer?.Observe(layer, LinearSlot.MlpInput, mlpInput, n);
        RunLinear(lw.Up, mlpInput, inner, n, mixed: true);
        switch (_config.Mlp)
        {
            case MlpKind.SwiGlu:
                // inner = silu(gate) · up, silu(g) = g · σ(g)
                RunLinear(lw.Gate!, mlpInput, _gate.AsSpan(0, n * f), n, mixed: true);
                ForRowRanges(n, (long)n * f, (begin, end) => ApplySwiGlu(_gate.AsSpan(begin * f, (end - begin) * f), _inner.AsSpan(begin * f, (end - begin) * f)));
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
        AddResidualAndNormalize(_projected, _config.PreNorm ? null : lw.MlpNorm, _hidden, n);
        return n;
    }

    /// <summary>
    /// For each of the <paramref name="n"/> rows of the residual stream x: x ← x + <paramref name="delta"/> (when given),
    /// then <paramref name="target"/> ← norm(x) (when <paramref name="norm"/> is given; <paramref name="target"/> may be
    /// the residual stream), a few rows at a time so each row is still in L1 for its norm, row ranges on the model's threads.
    /// </summary>
    private void AddResidualAndNormalize(float[]? delta, NormLayer? norm, float[] target, int n)
    {
        int d = _config.HiddenSize;
        const int RowBlock = 8;
        ForRowRanges(n, (long)n * d, (begin, end) =>
        {
            for (int r = begin; r < end; r += RowBlock)
            {
                int rows = Math.Min(RowBlock, end - r);
                Span<float> x = _hidden.AsSpan(r * d, rows * d);
                if (delta is not null) TensorPrimitives.Add(x, delta.AsSpan(r * d, rows * d), x);
                norm?.Forward(x, target.AsSpan(r * d, rows * d), rows);
            }
        });
    }

    /// <summary>
    /// Per row of the chunk, in this order: q, k and v rounded to <see cref="AttentionQuantization.QkvBits"/> (a scale per
    /// row), the rotary embedding at the row's position, k and v rounded to <see cref="AttentionQuantization.KvCacheBits"/>
    /// (a scale per row and key/value head); then the rows' keys and values transposed into <paramref name="layer"/>'s cache
    /// at slots <paramref name="start"/> + i. Blocks of <see cref="AttentionTiles.TransposeBlock"/> rows, each transposed
    /// right after its rounding while still in L1; rows are independent, so row blocks run on the model's threads.
    /// </summary>
    private void RoundRotateAndCache(int layer, int start, int n)
    {
        AttentionQuantization aq = _model.Options.Attention;
        RotaryEmbedding? rotary = _model.Rotary;
        bool transform = aq.QkvBits > 0 || aq.KvCacheBits > 0 || rotary is not null;
        int q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim;
        if (rotary is not null) PrepareRotations(rotary, n);
        float[] keys = _keyCache[layer], values = _valueCache[layer];
        int stride = _slotStride;
        const int Block = AttentionTiles.TransposeBlock;
        ForRowRanges((n + Block - 1) / Block, (long)n * (q + 2 * kv), (firstBlock, endBlock) =>
        {
            Span<float> uncached = stackalloc float[rotary?.RotationLength ?? 0];
            for (int block = firstBlock; block < endBlock; block++)
            {
                int begin = block * Block, end = Math.Min(n, begin + Block);
                if (transform)
                    for (int i = begin; i < end; i++) RoundAndRotateRow(i, aq, rotary, uncached);
                // keys[c, start + i] (KvDim, _slotStride) ← _key[i, c] (n, KvDim), values likewise
                unsafe
                {
                    fixed (float* keyRows = _key, valueRows = _value, keyCache = keys, valueCache = values)
                    {
                        AttentionTiles.Transpose(keyRows + (nint)begin * kv, kv, end - begin, 0, kv, keyCache + start + begin, stride);
                        AttentionTiles.Transpose(valueRows + (nint)begin * kv, kv, end - begin, 0, kv, valueCache + start + begin, stride);
                    }
                }
            }
        });
        // slots after the new ones, up to a whole vector ← 0: attention tiles read whole vectors
        int end = start + n, padEnd = Math.Min(AttentionTiles.PaddedWidth(end), stride);
        for (int c = 0; c < kv; c++)
        {
            keys.AsSpan(c * stride + end, padEnd - end).Clear();
            values.AsSpan(c * stride + end, padEnd - end).Clear();
        }
    }

    /// <summary>Row <paramref name="i"/>'s steps of <see cref="RoundRotateAndCache"/> before the cache; <paramref name="uncached"/>: room for a rotation.</summary>
    private void RoundAndRotateRow(int i, AttentionQuantization aq, RotaryEmbedding? rotary, Span<float> uncached)
    {
        int q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim;
        Span<float> query = _query.AsSpan(i * q, q), key = _key.AsSpan(i * kv, kv), value = _value.AsSpan(i * kv, kv);
        if (aq.QkvBits > 0)
        {
            ActivationRounding.RoundRows(query, 1, aq.QkvBits);
            ActivationRounding.RoundRows(key, 1, aq.QkvBits);
            ActivationRounding.RoundRows(value, 1, aq.QkvBits);
        }
        if (rotary is not null)
        {
            int position = _tokenPosition[i], length = rotary.RotationLength;
            ReadOnlySpan<float> rotation = uncached;
            if ((uint)position < (uint)_rotationReady.Length) rotation = _rotations.AsSpan(position * length, length);
            else rotary.FillRotation(position, uncached);
            rotary.Rotate(query, rotation);
            rotary.Rotate(key, rotation);
        }
        if (aq.KvCacheBits > 0)
        {
            // one scale per token and key/value head
            ActivationRounding.RoundRows(key, _config.NumKvHeads, aq.KvCacheBits);
            ActivationRounding.RoundRows(value, _config.NumKvHeads, aq.KvCacheBits);
        }
    }

    /// <summary>
    /// Fills the cached rotation of every row's position below the context length (grown to cover the largest, at least
    /// doubling), so the rows' threads only read the cache; positions past it are rotated from angles computed per row.
    /// </summary>
    private void PrepareRotations(RotaryEmbedding rotary, int n)
    {
        int length = rotary.RotationLength, limit = _config.MaxSequenceLength;
        for (int i = 0; i < n; i++)
        {
            int position = _tokenPosition[i];
            if (position >= limit) continue;
            if (position >= _rotationReady.Length)
            {
                int positions = Math.Min(limit, Math.Max(position + 1, 2 * _rotationReady.Length));
                Array.Resize(ref _rotations, positions * length);
                Array.Resize(ref _rotationReady, positions);
            }
            if (_rotationReady[position]) continue;
            rotary.FillRotation(position, _rotations.AsSpan(position * length, length));
            _rotationReady[position] = true;
        }
    }

    /// <summary>Below this many elements a row-wise step runs on the calling thread: the hand-off would cost more than it saves.</summary>
    private const long ParallelElementThreshold = 32 * 1024;

    /// <summary>
    /// Runs <paramref name="body"/>(begin, end) over [0, <paramref name="rows"/>) split into one contiguous range per
    /// thread of the model's kernel when the step touches at least <see cref="ParallelElementThreshold"/>
    /// <paramref name="elements"/>; else once over all rows on the calling thread (decode always).
    /// </summary>
    private void ForRowRanges(int rows, long elements, Action<int, int> body)
    {
        int parts = elements >= ParallelElementThreshold ? Math.Min(_threads, rows) : 1;
        if (parts <= 1)
        {
            body(0, rows);
            return;
        }
        Parallel.For(0, parts, part => body((int)((long)rows * part / parts), (int)((long)rows * (part + 1) / parts)));
    }

    /// <summary><c>inner ← g · σ(g) · inner</c> with g = <paramref name="gate"/>, in chunks that stay in L1 between the three passes.</summary>
    private static void ApplySwiGlu(Span<float> gate, Span<float> inner)
    {
        const int Chunk = 1024;
        Span<float> sigmoid = stackalloc float[Chunk];
        for (int i = 0; i < gate.Length; i += Chunk)
        {
            int length = Math.Min(Chunk, gate.Length - i);
            Span<float> g = gate.Slice(i, length), s = sigmoid[..length], x = inner.Slice(i, length);
            TensorPrimitives.Sigmoid(g, s);
            MultiplyGated(g, s, x);
        }
    }

    // x[i] ← (g[i] · s[i]) · x[i]: the two products TensorPrimitives.Multiply would round in turn, in one pass
    private static void MultiplyGated(ReadOnlySpan<float> g, ReadOnlySpan<float> s, Span<float> x)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            ReadOnlySpan<Vector<float>> gv = MemoryMarshal.Cast<float, Vector<float>>(g), sv = MemoryMarshal.Cast<float, Vector<float>>(s);
            Span<Vector<float>> xv = MemoryMarshal.Cast<float, Vector<float>>(x);
            for (int v = 0; v < xv.Length; v++) xv[v] = gv[v] * sv[v] * xv[v];
            i = xv.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++) x[i] = g[i] * s[i] * x[i];
    }

    /// <summary>Compacts the residual stream, the attention outputs and the per-row positions to the rows the pruner keeps; returns their count.</summary>
    private int DropPrunedRows(int n)
    {
        int d = _config.HiddenSize, q = _config.NumHeads * _config.HeadDim;
        _pruner.Compact();
        ReadOnlySpan<int> kept = _pruner.KeptRows;
        // rows move only towards the front (kept[k] ≥ k), so copying in ascending order never overwrites a row still needed
        for (int k = 0; k < kept.Length; k++)
        {
            int row = kept[k];
            if (row == k) continue;
            _hidden.AsSpan(row * d, d).CopyTo(_hidden.AsSpan(k * d, d));
            _attention.AsSpan(row * q, q).CopyTo(_attention.AsSpan(k * q, q));
            _tokenPosition[k] = _tokenPosition[row];
            _tokenMasked[k] = _tokenMasked[row];
        }
        return kept.Length;
    }

    // attn[i, h] = Σ_j softmax_j(q[i,h]·k[j,h']/√d + slope_h·pos_j) · v[j, h'], j over unmasked cached tokens up to i
    private void Attend(int layer, int start, int n)
    {
        int heads = _config.NumHeads;
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        bool selects = schedule is null
            ? _model.Options.LowBitTokenRatio > 0
            : schedule.RatioAt(layer) > 0 || schedule.LowBitRatioAt(layer) > 0;
        _collectStartAttention = n > 2 && selects;
        // (head, row chunk) units on the model's threads: always in prefill; in decode once the cached keys and values one
        // token reads (visible slots × heads · head size, each in its own slot row) are worth the hand-off
        long decodeElements = (long)(start + n) * heads * _config.HeadDim;
        int threads = Math.Min(_threads, heads * RowChunks(n));
        if (threads <= 1 || (n == 1 && decodeElements < ParallelElementThreshold))
        {
            for (int h = 0; h < heads; h++) AttendRows(layer, start, n, h, 0, n, 0);
            return;
        }
        // each thread claims the next unit until none is left, the heaviest (last, causal) row chunks first, so the threads
        // finish within about one small unit of each other instead of one whole head
        int units = heads * RowChunks(n), next = 0;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, worker =>
        {
            for (int unit; (unit = Interlocked.Increment(ref next) - 1) < units;)
            {
                int chunk = RowChunks(n) - 1 - unit / heads;
                AttendRows(layer, start, n, unit % heads, RowChunkStart(n, chunk), RowChunkStart(n, chunk + 1), worker);
            }
        });
    }

    /// <summary>Row chunks per head in <see cref="Attend"/>: 4 once each holds at least 8 query tiles, else 1.</summary>
    private static int RowChunks(int n) => n >= 4 * 8 * AttentionTiles.TileRows ? 4 : 1;

    /// <summary>First row of chunk <paramref name="chunk"/> (of <see cref="RowChunks"/>): equal shares, whole query tiles, n at the end.</summary>
    private static int RowChunkStart(int n, int chunk)
    {
        int chunks = RowChunks(n);
        return chunk >= chunks ? n : (int)((long)n * chunk / chunks) / AttentionTiles.TileRows * AttentionTiles.TileRows;
    }

    private bool _collectStartAttention;

    /// <summary>
    /// Attention of head <paramref name="head"/> for chunk rows [<paramref name="rowBegin"/>, <paramref name="rowEnd"/>) (a
    /// whole number of query tiles from row 0), using scratch tile <paramref name="worker"/> of <c>_scores</c>. A row's result
    /// does not depend on the rows computed with it.
    /// </summary>
    private unsafe void AttendRows(int layer, int start, int n, int head, int rowBegin, int rowEnd, int worker)
    {
        int hd = _config.HeadDim, q = _config.NumHeads * hd, stride = _slotStride;
        int kvHead = head / (_config.NumHeads / _config.NumKvHeads);
        float scale = 1f / MathF.Sqrt(hd);
        bool[] masked = _slotMasked[layer];
        bool anyMasked = _layerMaskedSlots[layer] > 0;
        fixed (float* keys = &_keyCache[layer][kvHead * hd * stride], values = &_valueCache[layer][kvHead * hd * stride])
        fixed (float* queries = _query, outputs = _attention, tile = &_scores[worker * AttentionTiles.TileRows * stride])
            for (int i0 = rowBegin; i0 < rowEnd; i0 += AttentionTiles.TileRows)
            {
                int rows = Math.Min(AttentionTiles.TileRows, rowEnd - i0);
                // causal: row i sees cached tokens 0..start+i; the tile computes up to its last row's, in whole vectors
                int width = AttentionTiles.PaddedWidth(start + i0 + rows);
                AttentionTiles.Scores(queries + i0 * q + head * hd, q, rows, keys, stride, hd, scale, tile, stride, width);
                for (int t = 0; t < rows; t++)
                {
                    int i = i0 + t, visible = start + i + 1;
                    Span<float> row = new(tile + t * stride, width);
                    Span<float> scores = row[..visible];
                    row[visible..].Clear(); // zero probabilities past the causal limit
                    if (_model.AlibiSlopes is not null)
                        TensorPrimitives.MultiplyAdd(_slotPositionValue[layer].AsSpan(0, visible), _model.AlibiSlopes[head], scores, scores);
                    if (anyMasked && !MaskPadding(scores, masked))
                    {
                        scores.Clear(); // every visible key is padding: no attention, a zero output
                        if (_collectStartAttention) _startAttention[head * n + i] = 0f;
                        continue;
                    }
                    // softmax, shifted by the maximum for stability
                    float max = TensorPrimitives.Max(scores);
                    TensorPrimitives.Subtract(scores, max, scores);
                    TensorPrimitives.Exp(scores, scores);
                    TensorPrimitives.Multiply(scores, 1f / TensorPrimitives.Sum(scores), scores);
                    if (_collectStartAttention) _startAttention[head * n + i] = masked[0] ? 0f : scores[0];
                    if (_model.Options.Attention.Log2Softmax) ActivationRounding.RoundToPowersOfTwo(scores);
                }
                AttentionTiles.WeightedValues(tile, stride, rows, values, stride, hd, outputs + i0 * q + head * hd, q, width);
            }
    }

    /// <summary>Sets padding slots' scores to −∞; returns false when every visible slot is padding.</summary>
    private static bool MaskPadding(Span<float> scores, bool[] masked)
    {
        bool anyVisible = false;
        for (int j = 0; j < scores.Length; j++)
        {
            if (masked[j]) scores[j] = float.NegativeInfinity;
            else anyVisible = true;
        }
        return anyVisible;
    }

    /// <summary>
    /// Chooses this layer's pruned and lower-bit rows from s_i = Σ_h A[h, i, 0] (never the start or the last token; none
    /// during decode). With a schedule: r_l and b_l, the lower-bit set inherited from earlier layers; without: the
    /// floor(LowBitTokenRatio·n) lowest-scoring rows, re-selected in every layer.
    /// </summary>
    private void SelectTokens(int layer, int n)
    {
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        if (schedule is null) _pruner.ClearLowBit();
        if (!_collectStartAttention) return;
        TokenPruner.ComputeScores(_startAttention, _config.NumHeads, n, _tokenScores);
        if (schedule is null)
            _pruner.Select(_tokenScores.AsSpan(0, n), 0, _model.Options.LowBitTokenRatio, PruningDirection.Lowest);
        else
            _pruner.Select(_tokenScores.AsSpan(0, n), schedule.RatioAt(layer), schedule.LowBitRatioAt(layer), schedule.Direction);
    }

    /// <summary>y = x·Wᵀ + b through the kernel for the layer's activation width; lower-bit tokens (mixed scheme) go through the 4-bit kernel.</summary>
    private void RunLinear(LinearLayer linear, ReadOnlySpan<float> x, Span<float> y, int n, bool mixed)
    {
        if (linear.StaticScales is StaticActivationScales scales && TripMatMul.Supports(linear.Weight))
        {
            RunTrip(linear, scales, x, y, n, mixed);
            return;
        }
        if (!mixed || linear.LowBitActivationBits == 0 || _pruner.LowBitCount == 0)
        {
            linear.Forward(_model.KernelForBits(linear.ActivationBits)!, x, y, n);
            return;
        }
        int inF = linear.InFeatures, outF = linear.OutFeatures;
        for (int pass = 0; pass < 2; pass++) // lower-bit rows first, then the rest
        {
            bool lowBit = pass == 0;
            int rows = 0;
            for (int i = 0; i < n; i++)
                if (_pruner.LowBit[i] == lowBit) x.Slice(i * inF, inF).CopyTo(_gatherIn.AsSpan(rows++ * inF, inF));
            if (rows == 0) continue;
            int bits = lowBit ? linear.LowBitActivationBits : linear.ActivationBits;
            linear.Forward(_model.KernelForBits(bits)!, _gatherIn, _gatherOut, rows);
            rows = 0;
            for (int i = 0; i < n; i++)
                if (_pruner.LowBit[i] == lowBit) _gatherOut.AsSpan(rows++ * outF, outF).CopyTo(y.Slice(i * outF, outF));
        }
    }

    /// <summary>
    /// TRIP (METHOD.md §4): one fused pass over the layer's rows, each quantized with the layer's static scale at its own
    /// bit width (lower-bit rows 4-bit when <paramref name="mixed"/>).
    /// </summary>
    private void RunTrip(LinearLayer linear, StaticActivationScales scales, ReadOnlySpan<float> x, Span<float> y, int n, bool mixed)
    {
        int outF = linear.OutFeatures;
        if (_tripRows.Length < n) _tripRows = new int[n];
        for (int i = 0; i < n; i++) _tripRows[i] = i;
        ReadOnlySpan<bool> lowBit = mixed && linear.LowBitActivationBits == 4 && _pruner.LowBitCount > 0 ? _pruner.LowBit : default;
        TripMatMul.Multiply(_model.Kernel, linear.Weight, x.Slice(0, n * linear.InFeatures), _tripRows.AsSpan(0, n), lowBit, scales, y, _threads);
        if (linear.Bias is null) return;
        for (int i = 0; i < n; i++)
            TensorPrimitives.Add(y.Slice(i * outF, outF), linear.Bias, y.Slice(i * outF, outF));
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

    /// <summary>
    /// Floats between one head dimension's slot row and the next: <paramref name="slots"/> rounded up to whole
    /// <see cref="AttentionTiles.SlotAlignment"/> vectors, plus one more when that count is even, so the row stride is an
    /// odd number of cache lines.
    /// </summary>
    /// <remarks>
    /// Why: attention reads one cache line from each of a head's slot rows in turn (64 rows for a head of 64), and the
    /// transposed store writes 16 rows at once. With a stride of a power-of-two number of lines (1024 slots = 4 KiB)
    /// every one of those lines falls in the same L1 set (64 sets of 12 ways here), so they evict each other; an odd
    /// line count spreads them over all sets.
    /// </remarks>
    internal static int SlotStride(int slots)
    {
        long aligned = ((long)slots + AttentionTiles.SlotAlignment - 1) / AttentionTiles.SlotAlignment * AttentionTiles.SlotAlignment;
        if (aligned / AttentionTiles.SlotAlignment % 2 == 0) aligned += AttentionTiles.SlotAlignment;
        return (int)Math.Min(int.MaxValue / AttentionTiles.SlotAlignment * AttentionTiles.SlotAlignment, aligned);
    }

    /// <summary>
    /// Grows every layer's KV cache to hold at least <paramref name="slots"/> tokens: at least doubling (amortized
    /// copies), never past the context length. Each (KvHeads · HeadDim) slot row is copied whole, its zero padding
    /// included, so the cached values, and every result, are the same as with a cache allocated in full up front.
    /// </summary>
    private void EnsureCacheSlots(int slots)
    {
        if (slots <= _slotStride) return;
        int stride = SlotStride(Math.Min(_config.MaxSequenceLength, Math.Max(slots, 2 * _slotStride)));
        int kv = _config.KvDim;
        for (int l = 0; l < _config.NumLayers; l++)
        {
            _keyCache[l] = Regrown(_keyCache[l], _slotStride, stride, kv);
            _valueCache[l] = Regrown(_valueCache[l], _slotStride, stride, kv);
        }
        _slotStride = stride;
    }

    // grown[c, s] (rows, stride) ← cache[c, s] (rows, oldStride) for s < oldStride; 0 after
    private static float[] Regrown(float[] cache, int oldStride, int stride, int rows)
    {
        var grown = new float[(long)stride * rows];
        for (int c = 0; c < rows && oldStride > 0; c++) cache.AsSpan(c * oldStride, oldStride).CopyTo(grown.AsSpan(c * stride, oldStride));
        return grown;
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
        if (_config.Mlp == MlpKind.SwiGlu) Grow(ref _gate, n * f);
        Grow(ref _scores, (long)Math.Max(1, _threads) * AttentionTiles.TileRows * _slotStride);
        Grow(ref _startAttention, _config.NumHeads * n);
        Grow(ref _tokenScores, n);
        if (_tokenPosition.Length < n)
        {
            _tokenPosition = new int[n];
            _tokenMasked = new bool[n];
        }
        if (_model.Options.LowBitTokenRatio > 0 || _model.Options.Pruning is not null)
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
