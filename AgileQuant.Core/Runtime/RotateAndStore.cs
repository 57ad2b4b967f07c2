namespace AgileQuant.Core.Runtime;

/// <summary>
/// Puts a chunk's projections in place for attention. Per row, in this order: q, k and v rounded to
/// <see cref="AttentionQuantization.QkvBits"/> (a scale per row), the rotary embedding at the row's position, k and v
/// rounded to <see cref="AttentionQuantization.KvCacheBits"/> (a scale per row and key/value head; when the cache stores
/// that rounding's codes, the cache rounds them as it stores them); then the rows' keys and values stored in the layer's
/// cache in its format. Blocks of <see cref="AttentionTiles.TransposeBlock"/> rows, each stored right after
/// its rounding while still in L1; rows are independent, so row blocks run on the kernels' threads.
/// </summary>
internal sealed class RotateAndStore : IRowRangeStep
{
    private const int Block = AttentionTiles.TransposeBlock;

    private readonly TransformerConfig _config;
    private readonly AttentionQuantization _quantization;
    private readonly RotaryEmbedding? _rotary;
    private readonly ForwardScratch _scratch;
    private readonly KvCache _cache;
    private readonly RowRanges _rowRanges;
    private float[] _rotations = [];    // (positions cached, 2·HeadDim): each position's RotaryEmbedding.FillRotation, computed once per context
    private bool[] _rotationReady = []; // (positions cached): its rotation is filled

    // the call in progress: the layer, its first new slot, the chunk's rows
    private int _layer, _start, _rows;
    private readonly bool _roundKv;     // the KV rounding happens here, not in the cache's own codes
    private readonly int _contextLength;

    public RotateAndStore(TransformerModel model, ForwardScratch scratch, KvCache cache, RowRanges rowRanges)
    {
        _config = model.Config;
        _quantization = model.Options.Attention;
        _roundKv = _quantization.KvCacheBits > 0 && cache.Layout != KvStorage.CacheLayout.SchemeCodes;
        _contextLength = model.ContextLength;
        _rotary = model.Rotary;
        _scratch = scratch;
        _cache = cache;
        _rowRanges = rowRanges;
    }

    /// <summary>
    /// Rounds and rotates the <paramref name="n"/> rows of the scratch's q (n, NumHeads·HeadDim), k and v (n, KvDim) in
    /// place, at the positions in the scratch, and stores k and v in <paramref name="layer"/>'s cache at slots
    /// <paramref name="start"/> + i.
    /// </summary>
    public void Run(int layer, int start, int n)
    {
        int q = _config.NumHeads * _config.HeadDim, kv = _config.KvDim;
        if (_rotary is not null) PrepareRotations(_rotary, n);
        (_layer, _start, _rows) = (layer, start, n);
        _rowRanges.Run(this, (n + Block - 1) / Block, (long)n * (q + 2 * kv));
        _cache.Storage.FinishLayer(layer, start, n, _scratch.Key);
    }

    void IRowRangeStep.Run(int firstBlock, int endBlock)
    {
        AttentionQuantization aq = _quantization;
        bool transform = aq.QkvBits > 0 || _roundKv || _rotary is not null;
        int kv = _config.KvDim, n = _rows;
        Span<float> uncached = stackalloc float[_rotary?.RotationLength ?? 0];
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
        if (aq.QkvBits > 0)
        {
            ActivationRounding.RoundRows(query, 1, aq.QkvBits);
            ActivationRounding.RoundRows(key, 1, aq.QkvBits);
            ActivationRounding.RoundRows(value, 1, aq.QkvBits);
        }
        if (_rotary is not null)
        {
            int position = _scratch.Position[i], length = _rotary.RotationLength;
            ReadOnlySpan<float> rotation = uncached;
            if ((uint)position < (uint)_rotationReady.Length) rotation = _rotations.AsSpan(position * length, length);
            else _rotary.FillRotation(position, uncached);
            _rotary.Rotate(query, rotation);
            _rotary.Rotate(key, rotation);
        }
        if (_roundKv)
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
        int length = rotary.RotationLength, limit = _contextLength;
        for (int i = 0; i < n; i++)
        {
            int position = _scratch.Position[i];
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
}
