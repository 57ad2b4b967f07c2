namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Keys and values stored head-major and transposed, one row of slots per key/value channel, for the exact attention path
/// (<see cref="CausalAttention{TSlots}"/>, <see cref="AttentionTiles"/>): FP32 values, or, with code bits, the int8 codes of
/// the paper's per-token-and-head KV rounding (<see cref="AttentionQuantization.KvCacheBits"/>) with one FP32 scale per
/// slot and head, which stand for the very values the rounding gives (<see cref="ActivationRounding.QuantizeRow"/>).
/// </summary>
/// <remarks>
/// Slots past the cached tokens, up to the next whole vector, stay zero (codes and scales): attention tiles read whole
/// vectors (<see cref="FinishLayer"/>). The rows grow with the sequence, at least doubling, and are copied whole, their
/// zero padding included, so every result is the same as with a cache allocated in full up front. Past half the context
/// they grow to the whole context at once (<see cref="EnsureCapacity"/>).
/// </remarks>
internal sealed unsafe class TransposedStorage : CacheStorage
{
    private const int Block = AttentionTiles.TransposeBlock;

    private readonly TransformerConfig _config;
    private readonly int _contextLength;
    private readonly int _codeBits;       // 0: FP32 rows; otherwise the rounding's bits, codes in int8 rows
    private readonly float[][] _keys;     // per layer: (KvDim, SlotStride) FP32 values, or none with codes
    private readonly float[][] _values;   // per layer: (KvDim, SlotStride)
    private readonly sbyte[][] _keyCodes; // per layer: (KvDim, SlotStride) codes, or none with FP32
    private readonly sbyte[][] _valueCodes;
    private readonly float[][] _keyScales;   // per layer: (NumKvHeads, SlotStride) scale of each slot's head vector
    private readonly float[][] _valueScales;
    [ThreadStatic] private static sbyte[]? t_codes; // (Block, KvDim) a block of rows' codes before transposing

    public TransposedStorage(TransformerConfig config, int contextLength, int codeBits)
    {
        _config = config;
        _contextLength = contextLength;
        _codeBits = codeBits;
        if ((long)StrideFor(contextLength) * config.KvDim > Array.MaxLength)
            throw new AgileQuantException($"A KV cache of {contextLength} positions × {config.KvDim} key/value width exceeds the largest array ({Array.MaxLength} elements); the context length is too large.");
        int layers = config.NumLayers;
        (_keys, _values, _keyCodes, _valueCodes, _keyScales, _valueScales) =
            (new float[layers][], new float[layers][], new sbyte[layers][], new sbyte[layers][], new float[layers][], new float[layers][]);
        for (int l = 0; l < layers; l++)
            (_keys[l], _values[l], _keyCodes[l], _valueCodes[l], _keyScales[l], _valueScales[l]) = ([], [], [], [], [], []);
    }

    /// <summary>Whether the rows hold int8 codes (with per-slot scales) rather than FP32 values.</summary>
    public bool HoldsCodes => _codeBits > 0;

    /// <summary>Elements between one channel's slot row and the next (<see cref="StrideFor"/> of the slots allocated).</summary>
    public int SlotStride { get; private set; }

    public override int Capacity => SlotStride;

    public override long AllocatedBytes => (long)_config.NumLayers * 2 * SlotStride *
        (HoldsCodes ? _config.KvDim + (long)_config.NumKvHeads * sizeof(float) : (long)_config.KvDim * sizeof(float));

    /// <summary>FP32 keys of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public float[] Keys(int layer) => _keys[layer];

    /// <summary>FP32 values of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public float[] Values(int layer) => _values[layer];

    /// <summary>Key codes of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public sbyte[] KeyCodes(int layer) => _keyCodes[layer];

    /// <summary>Value codes of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public sbyte[] ValueCodes(int layer) => _valueCodes[layer];

    /// <summary>Key scales of <paramref name="layer"/> (NumKvHeads, <see cref="SlotStride"/>).</summary>
    public float[] KeyScales(int layer) => _keyScales[layer];

    /// <summary>Value scales of <paramref name="layer"/> (NumKvHeads, <see cref="SlotStride"/>).</summary>
    public float[] ValueScales(int layer) => _valueScales[layer];

    // keys[c, firstSlot + i] (KvDim, SlotStride) ← keyRows[i, c] (rows, KvDim), values likewise; with codes, each row's
    // head vectors rounded first (one scale per slot and head)
    public override void Store(int layer, int firstSlot, float* keyRows, float* valueRows, int rows)
    {
        int kv = _config.KvDim, stride = SlotStride;
        if (!HoldsCodes)
        {
            fixed (float* keys = _keys[layer], values = _values[layer])
            {
                AttentionTiles.Transpose(keyRows, kv, rows, 0, kv, keys + firstSlot, stride);
                AttentionTiles.Transpose(valueRows, kv, rows, 0, kv, values + firstSlot, stride);
            }
            return;
        }
        for (int done = 0; done < rows; done += Block)
        {
            int count = Math.Min(Block, rows - done), slot = firstSlot + done;
            StoreCodes(keyRows + (nint)done * kv, count, _keyCodes[layer], _keyScales[layer], slot);
            StoreCodes(valueRows + (nint)done * kv, count, _valueCodes[layer], _valueScales[layer], slot);
        }
    }

    // codes[c, slot + i] ← q(x[i, c]), scales[h, slot + i] ← the scale of row i's head h, for i < count ≤ Block
    private void StoreCodes(float* x, int count, sbyte[] codes, float[] scales, int slot)
    {
        int kv = _config.KvDim, hd = _config.HeadDim, stride = SlotStride;
        sbyte[] block = t_codes is { } buffer && buffer.Length >= Block * kv ? buffer : t_codes = new sbyte[Block * kv];
        for (int i = 0; i < count; i++)
            for (int h = 0; h < _config.NumKvHeads; h++)
                scales[h * stride + slot + i] = ActivationRounding.QuantizeRow(new ReadOnlySpan<float>(x + (nint)i * kv + h * hd, hd), _codeBits, block.AsSpan(i * kv + h * hd, hd));
        for (int c = 0; c < kv; c++)
        {
            Span<sbyte> row = codes.AsSpan(c * stride + slot, count);
            for (int i = 0; i < count; i++) row[i] = block[i * kv + c];
        }
    }

    public override void Decode(int layer, int kvHead, int slot, int layerLength, Span<float> key, Span<float> value)
    {
        int hd = _config.HeadDim, stride = SlotStride;
        for (int d = 0; d < hd; d++)
        {
            int at = (kvHead * hd + d) * stride + slot;
            (key[d], value[d]) = HoldsCodes
                ? (_keyCodes[layer][at] * _keyScales[layer][kvHead * stride + slot], _valueCodes[layer][at] * _valueScales[layer][kvHead * stride + slot])
                : (_keys[layer][at], _values[layer][at]);
        }
    }

    // zero the slots from the chunk's end up to a whole vector: attention tiles read whole vectors
    public override void FinishLayer(int layer, int start, int n, float[] keyRows)
    {
        int end = start + n, stride = SlotStride, padEnd = Math.Min(AttentionTiles.PaddedWidth(end), stride);
        if (padEnd <= end) return;
        for (int c = 0; c < _config.KvDim; c++)
        {
            if (HoldsCodes)
            {
                _keyCodes[layer].AsSpan(c * stride + end, padEnd - end).Clear();
                _valueCodes[layer].AsSpan(c * stride + end, padEnd - end).Clear();
            }
            else
            {
                _keys[layer].AsSpan(c * stride + end, padEnd - end).Clear();
                _values[layer].AsSpan(c * stride + end, padEnd - end).Clear();
            }
        }
        if (!HoldsCodes) return;
        for (int h = 0; h < _config.NumKvHeads; h++)
        {
            _keyScales[layer].AsSpan(h * stride + end, padEnd - end).Clear();
            _valueScales[layer].AsSpan(h * stride + end, padEnd - end).Clear();
        }
    }

    /// <summary>
    /// Grows every layer's rows to hold at least <paramref name="slots"/> tokens: at least doubling (amortized copies),
    /// never past the context length; past half the context straight to the whole context, which the next doubling would
    /// reach anyway, so the cache is never copied from more than half the context (the copy holds old and new rows at once).
    /// </summary>
    public override void EnsureCapacity(int slots)
    {
        if (slots <= SlotStride) return;
        int wanted = Math.Max(slots, 2 * SlotStride);
        int stride = StrideFor(2L * wanted > _contextLength ? _contextLength : wanted);
        int kv = _config.KvDim, heads = _config.NumKvHeads;
        for (int l = 0; l < _config.NumLayers; l++)
        {
            if (HoldsCodes)
            {
                _keyCodes[l] = Regrown(_keyCodes[l], SlotStride, stride, kv);
                _valueCodes[l] = Regrown(_valueCodes[l], SlotStride, stride, kv);
                _keyScales[l] = Regrown(_keyScales[l], SlotStride, stride, heads);
                _valueScales[l] = Regrown(_valueScales[l], SlotStride, stride, heads);
            }
            else
            {
                _keys[l] = Regrown(_keys[l], SlotStride, stride, kv);
                _values[l] = Regrown(_values[l], SlotStride, stride, kv);
            }
        }
        SlotStride = stride;
    }

    // grown[c, s] (rows, stride) ← cache[c, s] (rows, oldStride) for s < oldStride; 0 after
    private static T[] Regrown<T>(T[] cache, int oldStride, int stride, int rows)
    {
        var grown = new T[(long)stride * rows];
        for (int c = 0; c < rows && oldStride > 0; c++) cache.AsSpan(c * oldStride, oldStride).CopyTo(grown.AsSpan(c * stride, oldStride));
        return grown;
    }

    /// <summary>
    /// Elements between one channel's slot row and the next for <paramref name="slots"/> slots: rounded up to whole
    /// <see cref="AttentionTiles.SlotAlignment"/> vectors, plus one more when that count is even, so the row stride is an
    /// odd number of cache lines.
    /// </summary>
    /// <remarks>
    /// Why: attention reads one cache line from each of a head's slot rows in turn (64 rows for a head of 64), and the
    /// transposed store writes 16 rows at once. With a stride of a power-of-two number of lines (1024 slots = 4 KiB)
    /// every one of those lines falls in the same L1 set (64 sets of 12 ways here), so they evict each other; an odd
    /// line count spreads them over all sets.
    /// </remarks>
    internal static int StrideFor(int slots)
    {
        long aligned = ((long)slots + AttentionTiles.SlotAlignment - 1) / AttentionTiles.SlotAlignment * AttentionTiles.SlotAlignment;
        if (aligned / AttentionTiles.SlotAlignment % 2 == 0) aligned += AttentionTiles.SlotAlignment;
        return (int)Math.Min(int.MaxValue / AttentionTiles.SlotAlignment * AttentionTiles.SlotAlignment, aligned);
    }
}
