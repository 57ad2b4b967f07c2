namespace AgileQuant.Core.Runtime;

/// <summary>
/// Puts a chunk's projections in place for attention. Per row, in this order: each head of q and k RMS-normalised (Qwen3,
/// Gemma 3: <see cref="TransformerConfig.QueryKeyNorm"/>), q, k and v rounded to <see cref="AttentionQuantization.QkvBits"/>
/// (a scale per row), the layer's rotary embedding at the row's position, k and v rounded to
/// <see cref="AttentionQuantization.KvCacheBits"/> (a scale per row and key/value head; when the cache stores that
/// rounding's codes, the cache rounds them as it stores them); then the rows' keys and values stored in the layer's cache
/// in its format. Blocks of <see cref="AttentionTiles.TransposeBlock"/> rows, each stored right after its rounding while
/// still in L1; rows are independent, so row blocks run on the kernels' threads.
/// </summary>
internal sealed class RotateAndStore : IRowRangeStep
{
    private const int Block = AttentionTiles.TransposeBlock;

    private readonly TransformerConfig _config;
    private readonly TransformerModel _model;
    private readonly AttentionQuantization _quantization;
    private readonly ForwardScratch _scratch;
    private readonly KvCache _cache;
    private readonly RowRanges _rowRanges;
    private readonly RotationCache? _global;  // the global layers' rotations (every layer's without local ones)
    private readonly RotationCache? _local;   // the sliding-window layers' rotations: _global unless they have their own base

    // the call in progress: the layer, its rotations and query/key norms, its first new slot, the chunk's rows
    private int _layer, _start, _rows;
    private readonly bool _roundKv;     // the KV rounding happens here, not in the cache's own codes
    private readonly int _contextLength;
    private RotationCache? _rotations;
    private NormLayer? _queryNorm, _keyNorm;

    public RotateAndStore(TransformerModel model, ForwardScratch scratch, KvCache cache, RowRanges rowRanges)
    {
        _config = model.Config;
        _model = model;
        _quantization = model.Options.Attention;
        _roundKv = _quantization.KvCacheBits > 0 && cache.Layout != KvStorage.CacheLayout.SchemeCodes;
        _contextLength = model.ContextLength;
        _scratch = scratch;
        _cache = cache;
        _rowRanges = rowRanges;
        if (model.Rotary is not null) _global = new RotationCache(model.Rotary);
        if (model.LocalRotary is not null) _local = ReferenceEquals(model.LocalRotary, model.Rotary) ? _global : new RotationCache(model.LocalRotary);
    }

    /// <summary>
    /// Rounds and rotates the <paramref name="n"/> rows of the scratch's q (n, NumHeads·HeadDim), k and v (n, KvDim) in
    /// place, at the positions in the scratch, and stores k and v in <paramref name="layer"/>'s cache at slots
    /// <paramref name="start"/> + i.
    /// </summary>
    public void Run(int layer, int start, int n)
    {
        int q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim;
        _rotations = _config.IsLocalLayer(layer) ? _local : _global;
        _rotations?.Prepare(_scratch.Position, n, _contextLength);
        LayerWeights weights = _model.Weights.Layers[layer];
        (_queryNorm, _keyNorm) = _config.QueryKeyNorm ? (weights.QueryNorm, weights.KeyNorm) : (null, null);
        (_layer, _start, _rows) = (layer, start, n);
        _rowRanges.Run(this, (n + Block - 1) / Block, (long)n * (q + 2 * kv));
        _cache.Storage.FinishLayer(layer, start, n, _scratch.Key);
        (_rotations, _queryNorm, _keyNorm) = (null, null, null);
    }

    void IRowRangeStep.Run(int firstBlock, int endBlock)
    {
        AttentionQuantization aq = _quantization;
        bool transform = aq.QkvBits > 0 || _roundKv || _rotations is not null || _queryNorm is not null;
        int kv = _config.KvDim, n = _rows;
        Span<float> uncached = stackalloc float[_rotations?.Rotary.RotationLength ?? 0];
        for (int block = firstBlock; block < endBlock; block++)
        {
            int begin = block * Block, end = Math.Min(n, begin + Block);
            if (transform)
                for (int i = begin; i < end; i++) RoundAndRotateRow(i, uncached);
            unsafe
            {
                fixed (float* keyRows = _scratch.Key, valueRows = _scratch.Value)
                    _cache.Storage.Store(_layer, _start + begin, keyRows + (nint)begin * kv, valueRows + (nint)begin * kv, end - begin);
            }
        }
    }

    /// <summary>Row <paramref name="i"/>'s steps before the cache; <paramref name="uncached"/>: room for a rotation.</summary>
    private void RoundAndRotateRow(int i, Span<float> uncached)
    {
        AttentionQuantization aq = _quantization;
        int q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim;
        Span<float> query = _scratch.Query.AsSpan(i * q, q), key = _scratch.Key.AsSpan(i * kv, kv), value = _scratch.Value.AsSpan(i * kv, kv);
        // each head of q (NumHeads, HeadDim) and k (NumKvHeads, HeadDim) normalised on its own
        _queryNorm?.Forward(query, query, _config.NumHeads);
        _keyNorm?.Forward(key, key, _config.NumKvHeads);
        if (aq.QkvBits > 0)
        {
            ActivationRounding.RoundRows(query, 1, aq.QkvBits);
            ActivationRounding.RoundRows(key, 1, aq.QkvBits);
            ActivationRounding.RoundRows(value, 1, aq.QkvBits);
        }
        if (_rotations is { } rotations)
        {
            ReadOnlySpan<float> rotation = rotations.Rotation(_scratch.Position[i], uncached);
            rotations.Rotary.Rotate(query, rotation);
            rotations.Rotary.Rotate(key, rotation);
        }
        if (_roundKv)
        {
            // one scale per token and key/value head
            ActivationRounding.RoundRows(key, _config.NumKvHeads, aq.KvCacheBits);
            ActivationRounding.RoundRows(value, _config.NumKvHeads, aq.KvCacheBits);
        }
    }

    /// <summary>One rotary embedding's rotations, computed once per position and context.</summary>
    private sealed class RotationCache(RotaryEmbedding rotary)
    {
        private float[] _rotations = [];    // (positions cached, 2·HeadDim): each position's RotaryEmbedding.FillRotation
        private bool[] _rotationReady = []; // (positions cached): its rotation is filled

        public RotaryEmbedding Rotary { get; } = rotary;

        /// <summary>
        /// Fills the cached rotation of every row's position below the context length <paramref name="limit"/> (grown to cover
        /// the largest, at least doubling), so the rows' threads only read the cache; positions past it are rotated from
        /// angles computed per row.
        /// </summary>
        public void Prepare(ReadOnlySpan<int> positions, int n, int limit)
        {
            int length = Rotary.RotationLength;
            for (int i = 0; i < n; i++)
            {
                int position = positions[i];
                if (position >= limit) continue;
                if (position >= _rotationReady.Length)
                {
                    int count = Math.Min(limit, Math.Max(position + 1, 2 * _rotationReady.Length));
                    Array.Resize(ref _rotations, count * length);
                    Array.Resize(ref _rotationReady, count);
                }
                if (_rotationReady[position]) continue;
                Rotary.FillRotation(position, _rotations.AsSpan(position * length, length));
                _rotationReady[position] = true;
            }
        }

        /// <summary>The rotation of <paramref name="position"/>: cached, or filled into <paramref name="uncached"/>.</summary>
        public ReadOnlySpan<float> Rotation(int position, Span<float> uncached)
        {
            int length = Rotary.RotationLength;
            if ((uint)position < (uint)_rotationReady.Length) return _rotations.AsSpan(position * length, length);
            Rotary.FillRotation(position, uncached);
            return uncached;
        }
    }
}
