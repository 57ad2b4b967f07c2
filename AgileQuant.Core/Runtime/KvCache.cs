namespace AgileQuant.Core.Runtime;

/// <summary>
/// The key/value cache of one inference context: per layer, the keys and values of every token that reached the layer
/// (fewer in later layers after token pruning), each slot's model position and padding flag, and the counts that give
/// the next token its default and renumbered positions.
/// </summary>
/// <remarks>
/// Keys and values are stored head-major and transposed, one row of slots per key/value channel, so attention runs over
/// long contiguous slot vectors whatever the head size. Slots past the cached tokens, up to the next whole vector, stay
/// zero: attention tiles read whole vectors. The rows grow with the sequence (<see cref="EnsureSlots"/>), so a context
/// holds memory for the tokens it has seen, not for the whole context length.
/// </remarks>
internal sealed class KvCache
{
    private readonly TransformerConfig _config;
    private readonly float[][] _keys;            // per layer: (KvDim, SlotStride), channel c of slot s at c · SlotStride + s
    private readonly float[][] _values;          // per layer: (KvDim, SlotStride)
    private readonly float[][] _slotPositionValue; // per layer: (capacity) model position of each cached token, a float for ALiBi
    private readonly bool[][] _slotMasked;       // per layer: (capacity) cached token is padding, never attended to
    private readonly int[] _layerLength;         // (NumLayers): tokens cached in each layer
    private readonly int[] _layerMaskedSlots;    // (NumLayers): how many of them are padding
    private readonly int[] _layerRealTokens;     // (NumLayers): how many are not: the layer's next renumbered position

    /// <summary>Creates an empty cache for <paramref name="config"/>; throws when a full-length cache could not be allocated.</summary>
    public KvCache(TransformerConfig config)
    {
        _config = config;
        int slots = config.MaxSequenceLength, layers = config.NumLayers;
        if ((long)StrideFor(slots) * config.KvDim > Array.MaxLength)
            throw new AgileQuantException($"A KV cache of {slots} positions × {config.KvDim} key/value width exceeds the largest array ({Array.MaxLength} elements); the context length is too large.");
        _keys = new float[layers][];
        _values = new float[layers][];
        _slotPositionValue = new float[layers][];
        _slotMasked = new bool[layers][];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = [];
            _values[l] = [];
            _slotPositionValue[l] = []; // grown with the rows (EnsureSlots): a declared context length sizes nothing up front
            _slotMasked[l] = [];
        }
        _layerLength = new int[layers];
        _layerMaskedSlots = new int[layers];
        _layerRealTokens = new int[layers];
    }

    /// <summary>Tokens fed so far, pruned ones included.</summary>
    public int Length { get; private set; }

    /// <summary>Non-padding tokens fed so far: the default position of the next one.</summary>
    public int NextPosition { get; private set; }

    /// <summary>Floats between one channel's slot row and the next (<see cref="StrideFor"/> of the slots allocated).</summary>
    public int SlotStride { get; private set; }

    /// <summary>Tokens cached in <paramref name="layer"/>.</summary>
    public int LayerLength(int layer) => _layerLength[layer];

    /// <summary>Keys of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public float[] Keys(int layer) => _keys[layer];

    /// <summary>Values of <paramref name="layer"/> (KvDim, <see cref="SlotStride"/>).</summary>
    public float[] Values(int layer) => _values[layer];

    /// <summary>Model position of each of <paramref name="layer"/>'s slots as a float (at least the slots taken), for ALiBi.</summary>
    public float[] PositionValues(int layer) => _slotPositionValue[layer];

    /// <summary>Padding flag of each of <paramref name="layer"/>'s slots (at least the slots taken).</summary>
    public bool[] Masked(int layer) => _slotMasked[layer];

    /// <summary>Whether any slot of <paramref name="layer"/> holds padding.</summary>
    public bool HasPadding(int layer) => _layerMaskedSlots[layer] > 0;

    /// <summary>Counts a chunk's <paramref name="realTokens"/> non-padding tokens towards <see cref="NextPosition"/>.</summary>
    public void AddRealTokens(int realTokens) => NextPosition += realTokens;

    /// <summary>Counts a finished chunk's <paramref name="tokens"/> towards <see cref="Length"/>.</summary>
    public void AddTokens(int tokens) => Length += tokens;

    /// <summary>Empties the cache; the memory stays allocated for the next sequence.</summary>
    public void Reset()
    {
        Length = 0;
        NextPosition = 0;
        Array.Clear(_layerLength);
        Array.Clear(_layerMaskedSlots);
        Array.Clear(_layerRealTokens);
    }

    /// <summary>
    /// Takes <paramref name="n"/> slots of <paramref name="layer"/> for a chunk's rows and records each row's position and
    /// padding flag; returns the first slot. With <paramref name="renumber"/>, the non-padding rows' positions are first
    /// rewritten (in <paramref name="positions"/>) to the layer's next positions, as if pruned tokens had never been there.
    /// </summary>
    public int Append(int layer, Span<int> positions, ReadOnlySpan<bool> masked, int n, bool renumber)
    {
        int start = _layerLength[layer];
        if (renumber)
        {
            int next = _layerRealTokens[layer];
            for (int i = 0; i < n; i++)
                if (!masked[i]) positions[i] = next++;
        }
        for (int i = 0; i < n; i++)
        {
            _slotPositionValue[layer][start + i] = positions[i];
            _slotMasked[layer][start + i] = masked[i];
            if (masked[i]) _layerMaskedSlots[layer]++;
            else _layerRealTokens[layer]++;
        }
        _layerLength[layer] = start + n;
        return start;
    }

    /// <summary>
    /// Writes <paramref name="rows"/> rows of keys and values (each (rows, KvDim)) into <paramref name="layer"/>'s slots
    /// from <paramref name="firstSlot"/>. Different slots may be written from different threads at once.
    /// </summary>
    // keys[c, firstSlot + i] (KvDim, SlotStride) ← keyRows[i, c] (rows, KvDim), values likewise
    public unsafe void Store(int layer, int firstSlot, float* keyRows, float* valueRows, int rows)
    {
        int kv = _config.KvDim;
        fixed (float* keys = _keys[layer], values = _values[layer])
        {
            AttentionTiles.Transpose(keyRows, kv, rows, 0, kv, keys + firstSlot, SlotStride);
            AttentionTiles.Transpose(valueRows, kv, rows, 0, kv, values + firstSlot, SlotStride);
        }
    }

    /// <summary>Zeroes <paramref name="layer"/>'s slots from <paramref name="end"/> up to a whole vector: attention tiles read whole vectors.</summary>
    public void ClearTail(int layer, int end)
    {
        int stride = SlotStride, padEnd = Math.Min(AttentionTiles.PaddedWidth(end), stride);
        float[] keys = _keys[layer], values = _values[layer];
        for (int c = 0; c < _config.KvDim; c++)
        {
            keys.AsSpan(c * stride + end, padEnd - end).Clear();
            values.AsSpan(c * stride + end, padEnd - end).Clear();
        }
    }

    /// <summary>
    /// Grows every layer's rows to hold at least <paramref name="slots"/> tokens: at least doubling (amortized copies),
    /// never past the context length. Each slot row is copied whole, its zero padding included, so the cached values, and
    /// every result, are the same as with a cache allocated in full up front.
    /// </summary>
    public void EnsureSlots(int slots)
    {
        if (slots <= SlotStride) return;
        int stride = StrideFor(Math.Min(_config.MaxSequenceLength, Math.Max(slots, 2 * SlotStride)));
        int kv = _config.KvDim;
        for (int l = 0; l < _config.NumLayers; l++)
        {
            _keys[l] = Regrown(_keys[l], SlotStride, stride, kv);
            _values[l] = Regrown(_values[l], SlotStride, stride, kv);
            Array.Resize(ref _slotPositionValue[l], stride);
            Array.Resize(ref _slotMasked[l], stride);
        }
        SlotStride = stride;
    }

    // grown[c, s] (rows, stride) ← cache[c, s] (rows, oldStride) for s < oldStride; 0 after
    private static float[] Regrown(float[] cache, int oldStride, int stride, int rows)
    {
        var grown = new float[(long)stride * rows];
        for (int c = 0; c < rows && oldStride > 0; c++) cache.AsSpan(c * oldStride, oldStride).CopyTo(grown.AsSpan(c * stride, oldStride));
        return grown;
    }

    /// <summary>
    /// Floats between one channel's slot row and the next for <paramref name="slots"/> slots: rounded up to whole
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
