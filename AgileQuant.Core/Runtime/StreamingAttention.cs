using System.Diagnostics;
using System.Numerics.Tensors;
using AgileQuant.Core.Runtime.KvStorage;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Attention that reads keys stored as <typeparamref name="TKeys"/> and values as <typeparamref name="TValues"/>
/// (<see cref="KvCacheType.F16"/>, <see cref="KvCacheType.Q8"/>, <see cref="KvCacheType.Q4"/>) directly, blocked over the cached slots with an online
/// softmax (running maximum and sum, FlashAttention's recurrence): per unit of one key/value head and up to
/// <see cref="RowsPerUnit"/> query rows, every query head of the group (GQA) is scored against each block of
/// <see cref="SlotBlock"/> keys, the unit's running sums are rescaled when the maximum grows, and the block's values are
/// added with their weights. Each key and value row is read once per unit (in decode: once per token), and no row of
/// scores longer than a block exists. The config's attention scale, soft-capping (Gemma 2), ALiBi, padding, the causal
/// limit and the position-based sliding window (<see cref="SlidingWindowMask"/>) shape the scores as in
/// <see cref="CausalAttention{TSlots}"/>; blocks wholly outside every row's window are skipped.
/// </summary>
/// <remarks>
/// The start-token probability the pruner ranks rows by, A[h, i, 0] = exp(s_0 − m) / l, comes from slot 0's score and the
/// final maximum m and sum l: exact, not an estimate; NaN for a row whose window excludes the start token, as in
/// <see cref="CausalAttention{TSlots}"/>. With the log2 softmax the probabilities must be known before they are
/// rounded, so a first pass finds m and l and a second one rounds exp(s − m) / l and adds the values.
/// The products run the SIMD kernels of the formats, or their scalar twins with the scalar kernel set.
/// </remarks>
internal sealed unsafe class StreamingAttention<TKeys, TValues> : ICausalAttention, IChunkedWork where TKeys : IKeyFormat where TValues : IKvRows
{
    /// <summary>Slots scored at once per query: the longest row of scores.</summary>
    public const int SlotBlock = 64;

    /// <summary>Query rows per unit of work in prefill (all query heads of one key/value head).</summary>
    public const int RowsPerUnit = 16;

    private readonly TransformerConfig _config;
    private readonly float[]? _alibiSlopes; // (NumHeads), or null
    private readonly bool _log2Softmax, _simd;
    private readonly float _scale;          // multiplier of q·k: AttentionScale, or 1/√HeadDim
    private readonly float _softcap;        // c in c·tanh(s/c), 0 = none
    private readonly KernelThreads _threads;
    private readonly int _group, _queryBytes, _groupQueryBytes, _accumulator;
    private readonly Scratch[] _scratch;    // one per thread

    // the call in progress, for the threads
    private PagedKvStorage<TKeys, TValues>? _storage;
    private float* _queries, _outputs, _startAttention;
    private float[] _positionValues = [];
    private bool[] _masked = [];
    private bool _anyMasked;
    private int _layer, _layerLength, _start, _n, _window, _nextUnit;

    public StreamingAttention(TransformerModel model, KernelThreads threads, bool simd)
    {
        _config = model.Config;
        _alibiSlopes = model.AlibiSlopes;
        _log2Softmax = model.Options.Attention.Log2Softmax;
        _simd = simd;
        _scale = _config.AttentionScale > 0 ? _config.AttentionScale : 1f / MathF.Sqrt(_config.HeadDim);
        _softcap = _config.AttentionLogitSoftcap;
        _threads = threads;
        _group = _config.NumHeads / _config.NumKvHeads;
        _queryBytes = TKeys.QueryBytes(_config.HeadDim);
        _groupQueryBytes = TKeys.GroupQueryBytes(_config.HeadDim);
        _accumulator = TValues.AccumulatorLength(_config.HeadDim);
        _scratch = new Scratch[threads.Count];
    }

    /// <summary>One thread's buffers, for up to <see cref="RowsPerUnit"/> rows × the group's heads query vectors.</summary>
    private sealed class Scratch(int vectors, int queryBytes, int groupQueryBytes, int accumulator)
    {
        public readonly byte[] Prepared = new byte[vectors * queryBytes]; // (vectors, QueryBytes) each query prepared for the keys
        public readonly byte[] GroupQueries = new byte[Math.Max(1, vectors * groupQueryBytes)]; // (vectors, GroupQueryBytes) each query prepared for one key group
        public readonly float[] Scores = new float[vectors * SlotBlock];  // (vectors, SlotBlock) a block's scores, then weights
        public readonly float[] Sums = new float[vectors * accumulator];  // (vectors, AccumulatorLength) Σ weight · value
        public readonly float[] Max = new float[vectors];                 // (vectors) running maximum m
        public readonly float[] Total = new float[vectors];               // (vectors) running Σ exp(s − m) = l
        public readonly float[] StartScore = new float[vectors];          // (vectors) slot 0's score, or −∞ where it is masked
    }

    public void Attend(KvCache cache, int layer, int start, int n, ReadOnlySpan<float> query, Span<float> output, Span<float> startAttention)
    {
        int width = _config.NumHeads * _config.HeadDim;
        Debug.Assert(query.Length >= n * width && output.Length >= n * width && (startAttention.IsEmpty || startAttention.Length >= _config.NumHeads * n));
        Debug.Assert(cache.LayerLength(layer) >= start + n, "the rows' keys and values are stored before attention reads them");
        int units = _config.NumKvHeads * RowChunks(n);
        // units on the threads: always in prefill; in decode once the cached rows one token reads are worth the hand-off
        long decodeElements = (long)(start + n) * _config.NumHeads * _config.HeadDim;
        int threads = Math.Min(_threads.Count, units);
        fixed (float* queries = query, outputs = output, a = startAttention)
        {
            _queries = queries;
            _outputs = outputs;
            _startAttention = a;
            _storage = (PagedKvStorage<TKeys, TValues>)cache.Storage;
            (_positionValues, _masked, _anyMasked) = (cache.PositionValues(layer), cache.Masked(layer), cache.HasPadding(layer));
            (_layer, _layerLength, _start, _n) = (layer, cache.LayerLength(layer), start, n);
            _window = _config.IsLocalLayer(layer) ? _config.SlidingWindow : 0;
            try
            {
                _nextUnit = 0;
                if (threads <= 1 || (n == 1 && decodeElements < RowRanges.ParallelElementThreshold)) ((IChunkedWork)this).RunChunk(0, 1);
                else _threads.Run(this, threads);
            }
            finally
            {
                _queries = _outputs = _startAttention = null;
                _storage = null;
                (_positionValues, _masked) = ([], []);
            }
        }
    }

    /// <summary>Units of work per key/value head for a chunk of <paramref name="n"/> rows.</summary>
    private static int RowChunks(int n) => (n + RowsPerUnit - 1) / RowsPerUnit;

    /// <summary>Thread <paramref name="worker"/> claims the next (key/value head, row chunk) unit until none is left, the heaviest (last) row chunks first.</summary>
    void IChunkedWork.RunChunk(int worker, int workers)
    {
        int kvHeads = _config.NumKvHeads, chunks = RowChunks(_n), units = kvHeads * chunks;
        Scratch scratch = _scratch[worker] ??= new Scratch(RowsPerUnit * _group, _queryBytes, _groupQueryBytes, _accumulator);
        for (int unit; (unit = Interlocked.Increment(ref _nextUnit) - 1) < units;)
        {
            int chunk = chunks - 1 - unit / kvHeads, first = chunk * RowsPerUnit;
            AttendUnit(scratch, unit % kvHeads, first, Math.Min(_n, first + RowsPerUnit));
        }
    }

    /// <summary>Attention of every query head of key/value head <paramref name="kvHead"/> for rows [<paramref name="rowBegin"/>, <paramref name="rowEnd"/>).</summary>
    private void AttendUnit(Scratch scratch, int kvHead, int rowBegin, int rowEnd)
    {
        int hd = _config.HeadDim, width = _config.NumHeads * hd, group = _group, vectors = (rowEnd - rowBegin) * group;
        // rows see slots [first, last]: the causal limit start + i, and the first slot inside some row's window
        int lastSlot = _start + rowEnd - 1, firstSlot = FirstVisible(rowBegin, rowEnd, lastSlot);
        fixed (byte* prepared = scratch.Prepared, groupQueries = scratch.GroupQueries)
        fixed (float* scores = scratch.Scores, sums = scratch.Sums, max = scratch.Max, total = scratch.Total, startScore = scratch.StartScore)
        {
            for (int v = 0; v < vectors; v++)
                TKeys.PrepareQuery(_queries + (rowBegin + v / group) * width + (kvHead * group + v % group) * hd, _scale, prepared + v * _queryBytes, hd);
            new Span<float>(sums, vectors * _accumulator).Clear();
            new Span<float>(max, vectors).Fill(float.NegativeInfinity);
            new Span<float>(total, vectors).Clear();
            new Span<float>(startScore, vectors).Fill(float.NegativeInfinity);
            int blockBegin = firstSlot / SlotBlock * SlotBlock;
            for (int block = blockBegin; block <= lastSlot; block += SlotBlock)
            {
                // the block's stored slots, not only those up to the unit's last row (masked past each row's limit): every
                // block a row reads then has the same length whichever rows share its unit, so a row's sums do not depend on
                // where the call (or a micro-batch of it, InferenceContext.MicroBatchTokens) began or ended
                int length = Math.Min(SlotBlock, _layerLength - block);
                ScoreKeys(kvHead, rowBegin, vectors, block, length, prepared, groupQueries, scores);
                if (block == 0) // slot 0's score, for the start-token probability, before the weights replace the scores
                    for (int v = 0; v < vectors; v++) startScore[v] = scores[v * SlotBlock];
                for (int v = 0; v < vectors; v++)
                {
                    Span<float> weights = new(scores + v * SlotBlock, length);
                    float blockMax = TensorPrimitives.Max(weights);
                    if (blockMax == float.NegativeInfinity)
                    {
                        weights.Clear(); // nothing visible here: weight 0 adds nothing
                        continue;
                    }
                    float newMax = MathF.Max(max[v], blockMax);
                    if (newMax > max[v] && max[v] != float.NegativeInfinity)
                    {
                        float rescale = MathF.Exp(max[v] - newMax);
                        total[v] *= rescale;
                        if (!_log2Softmax) TensorPrimitives.Multiply(new ReadOnlySpan<float>(sums + v * _accumulator, _accumulator), rescale, new Span<float>(sums + v * _accumulator, _accumulator));
                    }
                    max[v] = newMax;
                    TensorPrimitives.Subtract(weights, newMax, weights);
                    TensorPrimitives.Exp(weights, weights);
                    total[v] += TensorPrimitives.Sum(weights);
                }
                if (!_log2Softmax) AddBlockValues(kvHead, vectors, block, length, scores, sums);
            }
            if (_log2Softmax) AddRoundedValues(kvHead, rowBegin, vectors, blockBegin, lastSlot, prepared, groupQueries, scores, sums, max, total);
            for (int v = 0; v < vectors; v++)
            {
                int row = rowBegin + v / group, head = kvHead * group + v % group;
                float* output = _outputs + row * width + head * hd;
                bool none = total[v] == 0; // every visible slot is padding: no attention, a zero output
                if (none) new Span<float>(output, hd).Clear();
                else TValues.Finish(sums + v * _accumulator, _log2Softmax ? 1f : 1f / total[v], output, hd);
                if (_startAttention != null)
                    _startAttention[head * _n + row] = none ? 0f
                        : _positionValues[0] <= SlidingWindowMask.Limit(_window, _positionValues[_start + row]) ? float.NaN
                        : startScore[v] == float.NegativeInfinity ? 0f : MathF.Exp(startScore[v] - max[v]) / total[v];
            }
        }
    }

    /// <summary>
    /// The first slot any of rows [<paramref name="rowBegin"/>, <paramref name="rowEnd"/>) may see: 0, or in a sliding-window
    /// layer the first slot (up to <paramref name="lastSlot"/>) at a position above the rows' lowest window limit.
    /// </summary>
    private int FirstVisible(int rowBegin, int rowEnd, int lastSlot)
    {
        if (_window == 0) return 0;
        float limit = float.PositiveInfinity;
        for (int i = rowBegin; i < rowEnd; i++) limit = MathF.Min(limit, SlidingWindowMask.Limit(_window, _positionValues[_start + i]));
        int first = 0;
        while (first < lastSlot && _positionValues[first] <= limit) first++;
        return first;
    }

    /// <summary>
    /// scores[v, j] (vectors, SlotBlock) = the scaled (and soft-capped) score of query vector v against slot block + j, plus
    /// ALiBi, or −∞ where the slot is padding, past the row's causal limit or outside its window.
    /// </summary>
    private void ScoreKeys(int kvHead, int rowBegin, int vectors, int block, int length, byte* prepared, byte* groupQueries, float* scores)
    {
        int hd = _config.HeadDim, group = _group, keys = TKeys.GroupSlots, end = block + length;
        PagedKvStorage<TKeys, TValues> storage = _storage!;
        // a block never crosses a page; a key group never crosses a block; groups of one slot are scored as one run of rows
        for (int slot = block; slot < end;)
        {
            int groupStart = slot / keys * keys, next = keys == 1 ? Math.Min(end, _layerLength) : Math.Min(groupStart + keys, end);
            if (groupStart + keys <= _layerLength)
            {
                byte* stored = storage.KeyGroup(_layer, kvHead, slot);
                if (_simd) TKeys.ScoreGroup(stored, slot - groupStart, next - slot, prepared, groupQueries, vectors, scores + (slot - block), SlotBlock, hd);
                else TKeys.ScoreGroupScalar(stored, slot - groupStart, next - slot, prepared, groupQueries, vectors, scores + (slot - block), SlotBlock, hd);
            }
            else
                for (int s = slot; s < next; s++) // the partial group: fp16 rows, scored with the FP32 query
                {
                    var key = (byte*)storage.PartialKey(_layer, kvHead, s);
                    if (_simd) F16Rows.Scores(key, prepared, vectors, scores + (s - block), SlotBlock, hd);
                    else F16Rows.ScoresScalar(key, prepared, vectors, scores + (s - block), SlotBlock, hd);
                }
            slot = next;
        }
        for (int v = 0; v < vectors; v++)
        {
            Span<float> row = new(scores + v * SlotBlock, length);
            int slot = _start + rowBegin + v / group, visibleEnd = Math.Clamp(slot + 1 - block, 0, length);
            Span<float> visible = row[..visibleEnd];
            if (_softcap > 0) ActivationFunctions.SoftCap(visible, _softcap);
            if (_alibiSlopes is not null)
                TensorPrimitives.MultiplyAdd(_positionValues.AsSpan(block, visibleEnd), _alibiSlopes[kvHead * group + v % group], visible, visible);
            row[visibleEnd..].Fill(float.NegativeInfinity);
            float windowLimit = SlidingWindowMask.Limit(_window, _positionValues[slot]);
            if (_anyMasked || windowLimit >= 0)
                SlidingWindowMask.MaskInvisible(visible, _anyMasked ? _masked : null, _positionValues, windowLimit, block);
        }
    }

    // sums[v] += Σ_j weights[v, j] · value(block + j)
    private void AddBlockValues(int kvHead, int vectors, int block, int length, float* weights, float* sums)
    {
        int hd = _config.HeadDim;
        PagedKvStorage<TKeys, TValues> storage = _storage!;
        byte* value = storage.ValueRow(_layer, kvHead, block);
        int rowBytes = storage.ValueRowBytes;
        if (_simd) TValues.AddValueRows(value, rowBytes, length, weights, SlotBlock, vectors, sums, hd);
        else
            for (int j = 0; j < length; j++, value += rowBytes) TValues.AddValuesScalar(value, weights + j, SlotBlock, vectors, sums, hd);
    }

    // log2 softmax, second pass: weights = 2^round(log2(exp(s − m) / l)) from the final m and l, then their values
    private void AddRoundedValues(int kvHead, int rowBegin, int vectors, int blockBegin, int lastSlot, byte* prepared, byte* groupQueries, float* scores, float* sums, float* max, float* total)
    {
        for (int block = blockBegin; block <= lastSlot; block += SlotBlock)
        {
            int length = Math.Min(SlotBlock, lastSlot + 1 - block);
            ScoreKeys(kvHead, rowBegin, vectors, block, length, prepared, groupQueries, scores);
            for (int v = 0; v < vectors; v++)
            {
                Span<float> weights = new(scores + v * SlotBlock, length);
                if (total[v] == 0)
                {
                    weights.Clear();
                    continue;
                }
                TensorPrimitives.Subtract(weights, max[v], weights);
                TensorPrimitives.Exp(weights, weights);
                TensorPrimitives.Multiply(weights, 1f / total[v], weights);
                ActivationRounding.RoundToPowersOfTwo(weights);
            }
            AddBlockValues(kvHead, vectors, block, length, scores, sums);
        }
    }
}
