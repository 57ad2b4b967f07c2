using System.Diagnostics;
using System.Numerics.Tensors;
using AgileQuant.Core.Runtime.KvStorage;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Core.Runtime;

/// <summary>Multi-head causal attention of a chunk's queries over one layer of the context's <see cref="KvCache"/>.</summary>
internal interface ICausalAttention
{
    /// <summary>
    /// Attention of the <paramref name="n"/> rows of <paramref name="query"/> (n, NumHeads·HeadDim), row i at cache slot
    /// <paramref name="start"/> + i of <paramref name="layer"/> (already stored), into <paramref name="output"/>
    /// (n, NumHeads·HeadDim). When <paramref name="startAttention"/> is not empty, fills it (NumHeads, n) with A[h, i, 0]:
    /// 0 where the start slot is padding or every visible slot is, NaN where the start slot lies outside the row's
    /// sliding window (the row cannot be ranked by it; docs/architecture.md, "Token pruning with sliding-window layers").
    /// </summary>
    // out[i, h] = Σ_j softmax_j(cap(q[i, h]·k[j, h']·scale) + slope_h·pos_j) · v[j, h'], j over unmasked cached tokens up to
    // start + i (and, in a sliding-window layer, at positions p_j > p_i − window)
    void Attend(KvCache cache, int layer, int start, int n, ReadOnlySpan<float> query, Span<float> output, Span<float> startAttention);
}

/// <summary>
/// The exact attention path, over transposed slot rows (<see cref="TransposedStorage"/>: FP32 values, or the paper's KV
/// codes through <see cref="Int8Slots"/>): scores a tile of query rows at a time (<see cref="AttentionTiles"/>) over every
/// visible slot, soft-caps them (Gemma 2), adds ALiBi, masks padding and the slots outside a sliding window, softmax over the whole row (optionally rounded to powers
/// of two), and weights the values; (head, row chunk) units on the kernels' threads. Each query's attention to the start
/// token, A[h, i, 0], goes to the caller when asked for (token pruning ranks rows by it). One per inference context.
/// </summary>
/// <remarks>
/// A tile's rows of scores are materialized up to its longest row (TileRows × slots per thread): the price of summing each
/// row in one fixed order, which the golden tests and the published figures hold to bit for bit. The other KV types use
/// <see cref="StreamingAttention{TKeys, TValues}"/>.
/// </remarks>
internal sealed unsafe class CausalAttention<TSlots> : ICausalAttention, IChunkedWork where TSlots : ISlotVectors
{
    private readonly TransformerConfig _config;
    private readonly float[]? _alibiSlopes;  // (NumHeads), or null
    private readonly bool _log2Softmax;
    private readonly float _scale;           // multiplier of q·k: AttentionScale, or 1/√HeadDim
    private readonly float _softcap;         // c in c·tanh(s/c), 0 = none
    private readonly KernelThreads _threads;
    private float[] _scores = [];            // (threads, AttentionTiles.TileRows, SlotStride) scores, then probabilities, of each thread's query tile

    // the call in progress, for the threads: pinned pointers and the layer's slot metadata
    private float* _queries, _outputs, _startAttention, _keyScales, _valueScales, _tiles;
    private byte* _keys, _values;
    private float[] _positionValues = [];
    private bool[] _masked = [];
    private bool _anyMasked;
    private int _start, _n, _stride, _window, _nextUnit;

    public CausalAttention(TransformerModel model, KernelThreads threads)
    {
        _config = model.Config;
        _alibiSlopes = model.AlibiSlopes;
        _log2Softmax = model.Options.Attention.Log2Softmax;
        _scale = _config.AttentionScale > 0 ? _config.AttentionScale : 1f / MathF.Sqrt(_config.HeadDim);
        _softcap = _config.AttentionLogitSoftcap;
        _threads = threads;
    }

    public void Attend(KvCache cache, int layer, int start, int n, ReadOnlySpan<float> query, Span<float> output, Span<float> startAttention)
    {
        var storage = (TransposedStorage)cache.Storage;
        int heads = _config.NumHeads, stride = storage.SlotStride, width = heads * _config.HeadDim;
        Debug.Assert(query.Length >= n * width && output.Length >= n * width && (startAttention.IsEmpty || startAttention.Length >= heads * n));
        Debug.Assert(cache.LayerLength(layer) >= start + n, "the rows' keys and values are stored before attention reads them");
        Debug.Assert(storage.HoldsCodes == (TSlots.ElementSize == sizeof(sbyte)));
        long tiles = (long)_threads.Count * AttentionTiles.TileRows * stride;
        if (_scores.LongLength < tiles) _scores = new float[tiles];
        // (head, row chunk) units on the threads: always in prefill; in decode once the cached keys and values one token
        // reads (visible slots × heads · head size, each in its own slot row) are worth the hand-off
        long decodeElements = (long)(start + n) * heads * _config.HeadDim;
        int threads = Math.Min(_threads.Count, heads * RowChunks(n));
        fixed (float* keyScales = storage.KeyScales(layer), valueScales = storage.ValueScales(layer))
        {
            if (storage.HoldsCodes)
                fixed (sbyte* keys = storage.KeyCodes(layer), values = storage.ValueCodes(layer))
                    Run(cache, layer, start, n, query, output, startAttention, (byte*)keys, (byte*)values, keyScales, valueScales, stride, threads, decodeElements);
            else
                fixed (float* keys = storage.Keys(layer), values = storage.Values(layer))
                    Run(cache, layer, start, n, query, output, startAttention, (byte*)keys, (byte*)values, keyScales, valueScales, stride, threads, decodeElements);
        }
    }

    private void Run(KvCache cache, int layer, int start, int n, ReadOnlySpan<float> query, Span<float> output, Span<float> startAttention,
        byte* keys, byte* values, float* keyScales, float* valueScales, int stride, int threads, long decodeElements)
    {
        fixed (float* queries = query, outputs = output, a = startAttention, scores = _scores)
        {
            _queries = queries;
            _outputs = outputs;
            _startAttention = a;
            _keys = keys;
            _values = values;
            _keyScales = keyScales;
            _valueScales = valueScales;
            _tiles = scores;
            (_positionValues, _masked, _anyMasked) = (cache.PositionValues(layer), cache.Masked(layer), cache.HasPadding(layer));
            (_start, _n, _stride) = (start, n, stride);
            _window = _config.IsLocalLayer(layer) ? _config.SlidingWindow : 0;
            try
            {
                if (threads <= 1 || (n == 1 && decodeElements < RowRanges.ParallelElementThreshold))
                    for (int h = 0; h < _config.NumHeads; h++) AttendRows(h, 0, n, 0);
                else
                {
                    _nextUnit = 0;
                    _threads.Run(this, threads);
                }
            }
            finally
            {
                _queries = _outputs = _startAttention = _keyScales = _valueScales = _tiles = null;
                _keys = _values = null;
                (_positionValues, _masked) = ([], []);
            }
        }
    }

    /// <summary>
    /// Thread <paramref name="worker"/> (its own score tile) claims the next unit until none is left, the heaviest (last,
    /// causal) row chunks first, so the threads finish within about one small unit of each other instead of one whole head.
    /// </summary>
    void IChunkedWork.RunChunk(int worker, int workers)
    {
        int heads = _config.NumHeads, chunks = RowChunks(_n), units = heads * chunks;
        for (int unit; (unit = Interlocked.Increment(ref _nextUnit) - 1) < units;)
        {
            int chunk = chunks - 1 - unit / heads;
            AttendRows(unit % heads, RowChunkStart(_n, chunk), RowChunkStart(_n, chunk + 1), worker);
        }
    }

    /// <summary>Row chunks per head: 4 once each holds at least 8 query tiles, else 1.</summary>
    private static int RowChunks(int n) => n >= 4 * 8 * AttentionTiles.TileRows ? 4 : 1;

    /// <summary>First row of chunk <paramref name="chunk"/> (of <see cref="RowChunks"/>): equal shares, whole query tiles, n at the end.</summary>
    private static int RowChunkStart(int n, int chunk)
    {
        int chunks = RowChunks(n);
        return chunk >= chunks ? n : (int)((long)n * chunk / chunks) / AttentionTiles.TileRows * AttentionTiles.TileRows;
    }

    /// <summary>
    /// Attention of head <paramref name="head"/> for rows [<paramref name="rowBegin"/>, <paramref name="rowEnd"/>) (a whole
    /// number of query tiles from row 0), using score tile <paramref name="worker"/>. A row's result does not depend on the
    /// rows computed with it.
    /// </summary>
    private void AttendRows(int head, int rowBegin, int rowEnd, int worker)
    {
        int hd = _config.HeadDim, q = _config.NumHeads * hd, stride = _stride, start = _start, n = _n, e = TSlots.ElementSize;
        int kvHead = head / (_config.NumHeads / _config.NumKvHeads);
        float scale = _scale;
        byte* keys = _keys + (nint)kvHead * hd * stride * e, values = _values + (nint)kvHead * hd * stride * e;
        float* keyScales = _keyScales + kvHead * stride, valueScales = _valueScales + kvHead * stride;
        float* tile = _tiles + worker * AttentionTiles.TileRows * stride;
        bool[] masked = _masked;
        for (int i0 = rowBegin; i0 < rowEnd; i0 += AttentionTiles.TileRows)
        {
            int rows = Math.Min(AttentionTiles.TileRows, rowEnd - i0);
            // causal: row i sees cached tokens 0..start+i; the tile computes up to its last row's, in whole vectors
            int width = AttentionTiles.PaddedWidth(start + i0 + rows);
            AttentionTiles.Scores<TSlots>(_queries + i0 * q + head * hd, q, rows, keys, (nint)stride * e, keyScales, hd, scale, tile, stride, width);
            for (int t = 0; t < rows; t++)
            {
                int i = i0 + t, visible = start + i + 1;
                Span<float> row = new(tile + t * stride, width);
                Span<float> scores = row[..visible];
                row[visible..].Clear(); // zero probabilities past the causal limit
                if (_softcap > 0) ActivationFunctions.SoftCap(scores, _softcap);
                if (_alibiSlopes is not null)
                    TensorPrimitives.MultiplyAdd(_positionValues.AsSpan(0, visible), _alibiSlopes[head], scores, scores);
                // slots at positions ≤ p_i − window are outside the sliding window (none while p_i < window: positions are ≥ 0)
                float windowLimit = SlidingWindowMask.Limit(_window, _positionValues[start + i]);
                if ((_anyMasked || windowLimit >= 0) && !SlidingWindowMask.MaskInvisible(scores, _anyMasked ? masked : null, _positionValues, windowLimit))
                {
                    scores.Clear(); // every visible key is padding: no attention, a zero output
                    if (_startAttention != null) _startAttention[head * n + i] = 0f;
                    continue;
                }
                // softmax, shifted by the maximum for stability
                float max = TensorPrimitives.Max(scores);
                TensorPrimitives.Subtract(scores, max, scores);
                TensorPrimitives.Exp(scores, scores);
                TensorPrimitives.Multiply(scores, 1f / TensorPrimitives.Sum(scores), scores);
                if (_startAttention != null)
                    _startAttention[head * n + i] = _positionValues[0] <= windowLimit ? float.NaN : masked[0] ? 0f : scores[0];
                if (_log2Softmax) ActivationRounding.RoundToPowersOfTwo(scores);
            }
            AttentionTiles.WeightedValues<TSlots>(tile, stride, rows, values, (nint)stride * e, valueScales, hd, _outputs + i0 * q + head * hd, q, width);
        }
    }
}
