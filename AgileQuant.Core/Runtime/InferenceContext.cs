using System.Numerics.Tensors;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime.KvStorage;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Per-conversation state of a <see cref="TransformerModel"/>: the KV cache, the positions of the
/// cached tokens and scratch buffers. Not thread-safe; the model it reads is.
/// </summary>
/// <remarks>
/// With a <see cref="RuntimeOptions.Pruning"/> schedule, prefill drops tokens layer by layer, so each layer's
/// cache holds only the tokens that reached it (<see cref="LayerLength"/>), each with its own positions
/// (<see cref="PrunedPositions"/>). Decode appends one token to every layer's cache. Keys and values are stored as
/// <see cref="RuntimeOptions.KvCache"/> says, in memory that grows with the tokens held (<see cref="KvCacheBytes"/>), up to
/// <see cref="ContextLength"/> tokens.
/// </remarks>
public sealed class InferenceContext
{
    private readonly TransformerModel _model;
    private readonly TransformerConfig _config;
    private readonly KvCache _cache;                // per layer: the keys and values of every token that reached it
    private readonly ForwardScratch _s;             // the chunk's activations, one row per token
    private readonly TokenPruner _pruner = new();   // rows of the chunk: survivors and lower-bit flags
    private readonly LinearRouter _linear;          // y = x·Wᵀ + b, each row at its activation width
    private readonly RotateAndStore _rotateAndStore; // q, k, v rounded and rotated; k, v into the cache
    private readonly ICausalAttention _attention;   // over the cache's layout: the exact path or the streaming one
    private readonly ResidualAndNorm _residualAndNorm;
    private readonly GatedActivation _gatedActivation;
    private readonly OnlineHadamard _onlineHadamard; // QuaRot's online rotation of the o_proj and down_proj inputs of a rotated model
    private int[] _survivors = [];                  // original indices of the last forward's surviving tokens

    internal InferenceContext(TransformerModel model)
    {
        _model = model;
        _config = model.Config;
        _cache = new KvCache(_config, model.KvLayout, model.ContextLength, model.Options.Attention.KvCacheBits);
        _s = new ForwardScratch(_config);
        // the row-wise steps and attention run on the kernel's own threads, between its calls
        int threads = model.Kernel is KernelSet set ? set.Threads : 1;
        var rowRanges = new RowRanges(new KernelThreads(threads));
        _linear = new LinearRouter(model, _pruner, threads);
        _rotateAndStore = new RotateAndStore(model, _s, _cache, rowRanges);
        _attention = CreateAttention(model, _cache.Layout, rowRanges.Threads);
        _residualAndNorm = new ResidualAndNorm(rowRanges, _config.HiddenSize);
        _gatedActivation = new GatedActivation(rowRanges, _config.IntermediateSize, _config.Mlp);
        _onlineHadamard = new OnlineHadamard(rowRanges);
    }

    /// <summary>The attention that reads <paramref name="layout"/>; the scalar twins of its kernels with the scalar kernel set.</summary>
    internal static ICausalAttention CreateAttention(TransformerModel model, CacheLayout layout, Intrinsics.Threading.KernelThreads threads)
    {
        bool simd = model.Kernel is not KernelSet { Isa: KernelPreference.Scalar };
        return layout switch
        {
            CacheLayout.F32 => new CausalAttention<F32Slots>(model, threads),
            CacheLayout.SchemeCodes => new CausalAttention<Int8Slots>(model, threads),
            CacheLayout.F16 => new StreamingAttention<RowKeys<F16Rows>, F16Rows>(model, threads, simd),
            CacheLayout.Q8 => new StreamingAttention<Q8ChannelKeys, Q8Rows>(model, threads, simd),
            CacheLayout.Q4 => new StreamingAttention<Q4ChannelKeys, Q4Rows<HadamardRotation>>(model, threads, simd),
            CacheLayout.Q8TokenKeys => new StreamingAttention<RowKeys<Q8Rows>, Q8Rows>(model, threads, simd),
            CacheLayout.Q4TokenKeys => new StreamingAttention<RowKeys<Q4Rows<HadamardRotation>>, Q4Rows<HadamardRotation>>(model, threads, simd),
            _ => new StreamingAttention<RowKeys<Q4Rows<NoRotation>>, Q4Rows<NoRotation>>(model, threads, simd),
        };
    }

    /// <summary>The model this context runs.</summary>
    public TransformerModel Model => _model;

    /// <summary>Most tokens this context holds (<see cref="TransformerModel.ContextLength"/>).</summary>
    public int ContextLength => _model.ContextLength;

    /// <summary>Bytes this context's KV cache has allocated so far (keys, values and the slots' positions and flags, all layers): it grows with the tokens held.</summary>
    public long KvCacheBytes => _cache.AllocatedBytes;

    /// <summary>Receives every linear layer's input during <see cref="Forward(ReadOnlySpan{int}, bool)"/> (calibration); null for none.</summary>
    public ILinearInputObserver? Observer { get; set; }

    /// <summary>Number of tokens fed so far (held in the first layer's KV cache; later layers may hold fewer after pruning).</summary>
    public int Length => _cache.Length;

    /// <summary>Number of tokens held in <paramref name="layer"/>'s KV cache: those not pruned before that layer.</summary>
    public int LayerLength(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, _config.NumLayers);
        return _cache.LayerLength(layer);
    }

    /// <summary>
    /// Indices (into the tokens of the last <see cref="Forward(ReadOnlySpan{int}, bool)"/>) of the tokens that
    /// survived every pruning layer, ascending; their rows are what <c>allLogits</c> returns. All indices without pruning.
    /// </summary>
    public IReadOnlyList<int> SurvivingTokenIndices => _survivors;

    /// <summary>Empties the KV cache so the context can start a new sequence.</summary>
    public void Reset()
    {
        _cache.Reset();
        _survivors = [];
    }

#pragma warning disable RS0026, RS0027 // the shipped Forward(tokens, allLogits = false) keeps its optional parameter beside the new overloads
    /// <summary>
    /// Runs <paramref name="tokens"/> through the model as one matrix (prefill, or decode when one token),
    /// appends them to the KV cache, and returns the logits of the last token (VocabSize) or, with
    /// <paramref name="allLogits"/>, of every surviving token (<see cref="SurvivingTokenIndices"/>, VocabSize):
    /// every token unless <see cref="RuntimeOptions.Pruning"/> prunes some during prefill.
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits = false) => Forward(tokens, allLogits, default, default, default);

    /// <summary>
    /// As <see cref="Forward(ReadOnlySpan{int}, bool)"/>, stopping between layers when <paramref name="cancellationToken"/>
    /// is cancelled: the tokens are then not added and the context stays as it was before the call.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled; the context is unchanged and usable.</exception>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits, CancellationToken cancellationToken) =>
        Forward(tokens, allLogits, default, default, cancellationToken);

    /// <summary>
    /// As <see cref="Forward(ReadOnlySpan{int}, bool)"/>, with explicit model positions per token (default: the
    /// count of non-padding tokens before it, as Hugging Face derives them from the attention mask) and an
    /// optional padding mask (true = padding: cached, but never attended to).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits, ReadOnlySpan<int> positions, ReadOnlySpan<bool> padding) =>
        Forward(tokens, allLogits, positions, padding, default);

    /// <summary>
    /// As <see cref="Forward(ReadOnlySpan{int}, bool, ReadOnlySpan{int}, ReadOnlySpan{bool})"/>, stopping between layers when
    /// <paramref name="cancellationToken"/> is cancelled (the context then stays as it was before the call).
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled; the context is unchanged and usable.</exception>
    public float[] Forward(ReadOnlySpan<int> tokens, bool allLogits, ReadOnlySpan<int> positions, ReadOnlySpan<bool> padding, CancellationToken cancellationToken)
    {
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("At least one token is required.", nameof(tokens));
        if (!positions.IsEmpty && positions.Length != n) throw new ArgumentException($"Expected {n} positions, found {positions.Length}.", nameof(positions));
        if (!padding.IsEmpty && padding.Length != n) throw new ArgumentException($"Expected {n} padding flags, found {padding.Length}.", nameof(padding));
        if (Length + n > ContextLength)
            throw new AgileQuantException($"The sequence would hold {Length + n} tokens ({Length} cached + {n} new), but the context length is {ContextLength}.");
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)_config.VocabSize)
                throw new AgileQuantException($"Token id {tokens[i]} at index {i} is outside the vocabulary [0, {_config.VocabSize}).");

        cancellationToken.ThrowIfCancellationRequested();
        int start = Length;
        int batches = MicroBatches(n);
        _cache.EnsureSlots(start + n); // once for the whole call: the cache grows (and copies) at most once
        int widest = 0; // the largest micro-batch (n for one pass)
        for (int b = 0; b < batches; b++) widest = Math.Max(widest, MicroBatchEnd(start, n, b + 1, batches) - MicroBatchEnd(start, n, b, batches));
        _s.EnsureRows(widest);
        _cache.Checkpoint(); // one checkpoint for every micro-batch: a cancelled call leaves none of its tokens
        try
        {
            if (batches == 1)
            {
                int rows = Pass(tokens, positions, padding, cancellationToken);
                _survivors = _pruner.OriginalIndices.ToArray();
                return Logits(rows, allLogits);
            }
            // micro-batches: no pruning or lower-bit selection (checked by MicroBatches), so every row survives
            int v = _config.VocabSize;
            float[] logits = allLogits ? new float[(long)n * v] : [];
            for (int b = 0; b < batches; b++)
            {
                int from = MicroBatchEnd(start, n, b, batches) - start, to = MicroBatchEnd(start, n, b + 1, batches) - start;
                int rows = Pass(tokens[from..to], positions.IsEmpty ? default : positions[from..to], padding.IsEmpty ? default : padding[from..to], cancellationToken);
                if (allLogits) Logits(rows, true).CopyTo(logits.AsSpan(from * v, rows * v));
                else if (b == batches - 1) logits = Logits(rows, false);
                MicroBatchDone?.Invoke(b);
            }
            _survivors = Enumerable.Range(0, n).ToArray();
            return logits;
        }
        catch
        {
            _cache.Rollback(); // a pass that did not finish leaves no token behind: the context is as before the call
            throw;
        }
    }
#pragma warning restore RS0026, RS0027

    /// <summary>Most tokens one pass through the layers takes by default (llama.cpp's micro-batch): see <see cref="MicroBatchTokens"/>.</summary>
    internal const int DefaultMicroBatchTokens = 512;

    /// <summary>
    /// Micro-batch boundaries fall on slots that are multiples of this: whole key groups of every KV type (32 and 16 slots)
    /// and whole attention slot blocks (64). So only the last micro-batch leaves a partial key group, and a rollback to the
    /// call's checkpoint finds the partial group it started with intact (<see cref="KvStorage.PagedKvStorage{TKeys, TValues}"/>).
    /// </summary>
    internal const int MicroBatchAlignment = 64;

    /// <summary>
    /// Most tokens one pass through the layers takes: a longer call runs in micro-batches of about this many (equal
    /// shares, boundaries at slots that are multiples of <see cref="MicroBatchAlignment"/>), one after another over the
    /// same scratch, so the activations' memory is bounded by the micro-batch instead of growing with the prompt. Each
    /// row's result is the same as in one pass (every step is per row or causal over the cache). Set by tests.
    /// </summary>
    internal int MicroBatchTokens { get; set; } = DefaultMicroBatchTokens;

    /// <summary>Rows the scratch buffers hold now: the largest micro-batch (or whole call) run so far.</summary>
    internal int ScratchRows => _s.Hidden.Length / _config.HiddenSize;

    /// <summary>Called after each micro-batch of a split call with its index (tests: cancellation between micro-batches).</summary>
    internal Action<int>? MicroBatchDone { get; set; }

    /// <summary>
    /// Micro-batches for a call of <paramref name="n"/> tokens: 1 when it fits one, or when rows are selected across the
    /// whole call (token pruning, lower-bit tokens) or an observer (calibration) watches the whole call's inputs.
    /// </summary>
    private int MicroBatches(int n)
    {
        bool selects = _model.Options.Pruning is not null || _model.Options.LowBitTokenRatio > 0;
        if (n <= MicroBatchTokens || selects || Observer is not null || MicroBatchTokens < 2 * MicroBatchAlignment) return 1;
        return (n + MicroBatchTokens - 1) / MicroBatchTokens;
    }

    /// <summary>
    /// The slot after micro-batch <paramref name="b"/> − 1 of <paramref name="batches"/> over slots [start, start + n): the
    /// equal share's end rounded down to a multiple of <see cref="MicroBatchAlignment"/>; start and start + n at the ends.
    /// Shares are at least <see cref="MicroBatchTokens"/> / 2 ≥ <see cref="MicroBatchAlignment"/>, so every micro-batch
    /// holds at least one token and at most a share plus <see cref="MicroBatchAlignment"/>.
    /// </summary>
    private static int MicroBatchEnd(int start, int n, int b, int batches) =>
        b == 0 ? start : b == batches ? start + n : (int)((start + (long)n * b / batches) / MicroBatchAlignment * MicroBatchAlignment);

    /// <summary>
    /// One pass of <paramref name="tokens"/> through the layers: positions, embeddings, every layer (their keys and values
    /// appended to the cache); returns the rows left (fewer after pruning) in the scratch's residual stream.
    /// </summary>
    private int Pass(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<bool> padding, CancellationToken cancellationToken)
    {
        int n = tokens.Length, start = Length;
        SetPositions(positions, padding, n);
        Embed(tokens, n);
        _pruner.Begin(n, firstIsStart: start == 0);
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        // Renumbered: default positions are each layer's own count; explicit positions hold until the first pruning.
        bool renumber = schedule is { Positions: PrunedPositions.Renumbered } && positions.IsEmpty;
        int rows = n;
        for (int layer = 0; layer < _config.NumLayers; layer++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int before = rows;
            rows = Layer(layer, rows, renumber);
            if (rows < before && schedule is { Positions: PrunedPositions.Renumbered }) renumber = true;
        }
        _cache.AddTokens(n);
        return rows;
    }

    /// <summary>Each row's position (given, or the count of non-padding tokens before it) and padding flag.</summary>
    private void SetPositions(ReadOnlySpan<int> positions, ReadOnlySpan<bool> padding, int n)
    {
        int realInChunk = 0;
        for (int i = 0; i < n; i++)
        {
            bool pad = !padding.IsEmpty && padding[i];
            int position = positions.IsEmpty ? _cache.NextPosition + realInChunk : positions[i];
            if (position < 0) throw new ArgumentException($"Position {position} at index {i} is negative.", nameof(positions));
            if (_config.Positions == PositionKind.Learned && !pad)
            {
                long rows = _model.Weights.PositionEmbedding!.Length / _config.HiddenSize;
                if (position + _config.LearnedPositionOffset >= rows)
                    throw new AgileQuantException($"Position {position} is beyond the learned position table ({rows - _config.LearnedPositionOffset} positions).");
            }
            _s.Position[i] = position;
            _s.Masked[i] = pad;
            if (!pad) realInChunk++;
        }
        _cache.AddRealTokens(realInChunk);
    }

    // x (n, HiddenSize) = embed(tokens) [· scale] [· project_in] [+ learned position] [→ norm]
    private void Embed(ReadOnlySpan<int> tokens, int n)
    {
        TransformerWeights w = _model.Weights;
        int e = _config.EmbeddingWidth, d = _config.HiddenSize;
        float[] target = w.ProjectIn is null ? _s.Hidden : _s.Normed; // (n, EmbeddingWidth)
        for (int i = 0; i < n; i++) w.CopyTokenEmbedding(tokens[i], target.AsSpan(i * e, e));
        if (_config.EmbeddingScale != 1f) TensorPrimitives.Multiply(target.AsSpan(0, n * e), _config.EmbeddingScale, target.AsSpan(0, n * e)); // Gemma: · √d
        if (w.ProjectIn is not null) w.ProjectIn.Forward(_model.Kernel, _s.Normed, _s.Hidden, n);
        if (w.PositionEmbedding is not null)
            for (int i = 0; i < n; i++)
            {
                // OPT: padding tokens sit at position −1 → row offset−1, as Hugging Face's cumsum(mask)·mask − 1 gives
                int row = _s.Masked[i] ? _config.LearnedPositionOffset - 1 : _s.Position[i] + _config.LearnedPositionOffset;
                Span<float> h = _s.Hidden.AsSpan(i * d, d);
                TensorPrimitives.Add(h, w.PositionEmbedding.AsSpan(row * d, d), h);
            }
        w.EmbeddingNorm?.Forward(_s.Hidden, _s.Hidden, n);
    }

    /// <summary>Runs decoder layer <paramref name="layer"/> over the chunk's <paramref name="n"/> rows; returns the rows left after pruning.</summary>
    private int Layer(int layer, int n, bool renumber)
    {
        LayerWeights w = _model.Weights.Layers[layer];
        ForwardScratch s = _s;
        int d = _config.HiddenSize, q = _config.NumHeads * _config.HeadDim, f = _config.IntermediateSize;
        int start = _cache.Append(layer, s.Position, s.Masked, n, renumber); // the rows' slots start..start+n-1

        // attention block: x = x + O(attend(norm(x)))   (post-LN: x = norm(x + O(attend(x))))
        float[] input = s.Hidden; // (n, HiddenSize)
        if (_config.PreNorm)
        {
            _residualAndNorm.Run(s.Hidden, null, w.AttentionNorm, s.Normed, n);
            input = s.Normed;
        }
        Observer?.Observe(layer, LinearSlot.QueryKeyValue, input.AsSpan(0, n * d), n);
        _linear.Linear(w.Query, input, s.Query, n, mixed: false); // (n, NumHeads·HeadDim)
        _linear.Linear(w.Key, input, s.Key, n, mixed: false);     // (n, KvDim)
        _linear.Linear(w.Value, input, s.Value, n, mixed: false); // (n, KvDim)
        _rotateAndStore.Run(layer, start, n); // q, k per-head normed, q, k, v rounded, RoPE at each row's position; k, v → the cache
        Span<float> startAttention = SelectsTokens(layer, n) ? s.StartAttention.AsSpan(0, _config.NumHeads * n) : default; // (NumHeads, n)
        _attention.Attend(_cache, layer, start, n, s.Query, s.Attention, startAttention); // (n, NumHeads·HeadDim)
        SelectTokens(layer, n, startAttention); // pruned and lower-bit rows, by s_i = Σ_h A[h, i, 0]
        if (w.Output.HadamardInput) _onlineHadamard.Run(s.Attention, n, q); // attention output ← H·row; the weight holds W·Hᵀ
        Observer?.Observe(layer, LinearSlot.AttentionOutput, s.Attention.AsSpan(0, n * q), n);
        // rows pruned here leave after the residual add, which is per row: drop them now and skip their output projection
        if (_pruner.PrunedCount > 0)
        {
            _pruner.Compact();
            n = s.KeepRows(_pruner.KeptRows);
        }
        _linear.Linear(w.Output, s.Attention, s.Projected, n, mixed: true); // (n, HiddenSize)
        // pre-LN: x += [post-norm] O(…), then the MLP's input norm(x); post-LN: x = norm(x + O(…))
        _residualAndNorm.Run(s.Hidden, s.Projected, _config.PostNorms ? w.PostAttentionNorm : null, _config.PreNorm ? w.MlpNorm : w.AttentionNorm, _config.PreNorm ? s.Normed : s.Hidden, n);

        // MLP block: x = x + [post-norm] down(act(up(norm(x))))   (post-LN: x = norm(x + down(act(up(x)))))
        float[] mlpInput = _config.PreNorm ? s.Normed : s.Hidden; // (n, HiddenSize)
        Span<float> inner = s.Inner.AsSpan(0, n * f);             // (n, IntermediateSize)
        Observer?.Observe(layer, LinearSlot.MlpInput, mlpInput.AsSpan(0, n * d), n);
        _linear.Linear(w.Up, mlpInput, inner, n, mixed: true);
        switch (_config.Mlp)
        {
            case MlpKind.SwiGlu or MlpKind.GeGlu:
                // inner = act(gate) · up: silu(g) = g · σ(g) (SwiGLU), gelu_tanh(g) (GeGLU)
                _linear.Linear(w.Gate!, mlpInput, s.Gate.AsSpan(0, n * f), n, mixed: true);
                _gatedActivation.Run(s.Gate, s.Inner, n);
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
        if (w.Down.HadamardInput) _onlineHadamard.Run(s.Inner, n, f); // inner ← H·inner per row; the weight holds W·Hᵀ
        Observer?.Observe(layer, LinearSlot.MlpDown, inner, n);
        _linear.Linear(w.Down, inner, s.Projected, n, mixed: true); // (n, HiddenSize)
        _residualAndNorm.Run(s.Hidden, s.Projected, _config.PostNorms ? w.PostMlpNorm : null, _config.PreNorm ? null : w.MlpNorm, s.Hidden, n);
        return n;
    }

    /// <summary>Whether <paramref name="layer"/> ranks the chunk's rows (pruning or lower-bit tokens): only in a prefill of more than two.</summary>
    private bool SelectsTokens(int layer, int n)
    {
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        bool selects = schedule is null
            ? _model.Options.LowBitTokenRatio > 0
            : schedule.RatioAt(layer) > 0 || schedule.LowBitRatioAt(layer) > 0;
        return n > 2 && selects;
    }

    /// <summary>
    /// Chooses this layer's pruned and lower-bit rows from s_i = Σ_h A[h, i, 0] (<paramref name="startAttention"/>; empty
    /// when the layer selects none). With a schedule: r_l and b_l, the lower-bit set inherited from earlier layers; without:
    /// the floor(LowBitTokenRatio·n) lowest-scoring rows, re-selected in every layer.
    /// </summary>
    private void SelectTokens(int layer, int n, ReadOnlySpan<float> startAttention)
    {
        TokenPruningSchedule? schedule = _model.Options.Pruning;
        if (schedule is null) _pruner.ClearLowBit();
        if (startAttention.IsEmpty) return;
        Span<float> scores = _s.TokenScores.AsSpan(0, n);
        TokenPruner.ComputeScores(startAttention, _config.NumHeads, n, scores);
        if (schedule is null)
            _pruner.Select(scores, 0, _model.Options.LowBitTokenRatio, PruningDirection.Lowest);
        else
            _pruner.Select(scores, schedule.RatioAt(layer), schedule.LowBitRatioAt(layer), schedule.Direction);
    }

    // logits (rows, VocabSize) = [softcap] head([project_out] norm(x)) for the last row, or every row with allLogits
    private float[] Logits(int n, bool allLogits)
    {
        TransformerWeights w = _model.Weights;
        int d = _config.HiddenSize, e = _config.EmbeddingWidth, v = _config.VocabSize;
        int first = allLogits ? 0 : n - 1, rows = n - first;
        Span<float> last = _s.Hidden.AsSpan(first * d, rows * d);
        if (w.FinalNorm is not null) w.FinalNorm.Forward(last, _s.Normed, rows);
        else last.CopyTo(_s.Normed);
        ReadOnlySpan<float> headInput = _s.Normed.AsSpan(0, rows * d);
        if (w.ProjectOut is not null)
        {
            w.ProjectOut.Forward(_model.Kernel, headInput, _s.Projected, rows);
            headInput = _s.Projected.AsSpan(0, rows * e);
        }
        float[] logits = new float[(long)rows * v];
        w.LmHead.Forward(_model.Kernel, headInput, logits, rows);
        if (_config.FinalLogitSoftcap > 0) ActivationFunctions.SoftCap(logits, _config.FinalLogitSoftcap); // Gemma 2
        return logits;
    }
}
