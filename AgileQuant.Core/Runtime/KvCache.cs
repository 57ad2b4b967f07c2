using AgileQuant.Core.Runtime.KvStorage;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// The key/value cache of one inference context: per layer, the keys and values of every token that reached the layer
/// (fewer in later layers after token pruning) in the context's <see cref="CacheLayout"/>, each slot's model position and
/// padding flag, and the counts that give the next token its default and renumbered positions.
/// </summary>
/// <remarks>
/// Everything here grows with the tokens held (<see cref="EnsureSlots"/>), not with the context length: a context holds
/// memory for the tokens it has seen. <see cref="Checkpoint"/> and <see cref="Rollback"/> undo a forward pass that did not
/// finish (cancelled between layers), so the context stays usable.
/// </remarks>
internal sealed class KvCache
{
    private readonly TransformerConfig _config;
    private readonly int _contextLength;
    private readonly float[][] _slotPositionValue; // per layer: (capacity) model position of each cached token, a float for ALiBi
    private readonly bool[][] _slotMasked;       // per layer: (capacity) cached token is padding, never attended to
    private readonly int[] _layerLength;         // (NumLayers): tokens cached in each layer
    private readonly int[] _layerMaskedSlots;    // (NumLayers): how many of them are padding
    private readonly int[] _layerRealTokens;     // (NumLayers): how many are not: the layer's next renumbered position
    private readonly int[] _saved;               // (3 · NumLayers + 2): the counts at the last Checkpoint

    /// <summary>Creates an empty cache of <paramref name="layout"/> for at most <paramref name="contextLength"/> tokens; throws when a full-length cache could not be addressed.</summary>
    public KvCache(TransformerConfig config, CacheLayout layout, int contextLength, int kvCacheBits)
    {
        _config = config;
        _contextLength = contextLength;
        Layout = layout;
        Storage = CacheStorage.Create(layout, config, contextLength, kvCacheBits);
        int layers = config.NumLayers;
        _slotPositionValue = new float[layers][];
        _slotMasked = new bool[layers][];
        for (int l = 0; l < layers; l++) (_slotPositionValue[l], _slotMasked[l]) = ([], []); // grown with the rows (EnsureSlots): a declared context length sizes nothing up front
        _layerLength = new int[layers];
        _layerMaskedSlots = new int[layers];
        _layerRealTokens = new int[layers];
        _saved = new int[3 * layers + 2];
    }

    /// <summary>How keys and values are stored.</summary>
    public CacheLayout Layout { get; }

    /// <summary>The keys and values.</summary>
    public CacheStorage Storage { get; }

    /// <summary>Tokens fed so far, pruned ones included.</summary>
    public int Length { get; private set; }

    /// <summary>Non-padding tokens fed so far: the default position of the next one.</summary>
    public int NextPosition { get; private set; }

    /// <summary>Bytes allocated for keys, values and the slots' positions and flags, all layers.</summary>
    public long AllocatedBytes => Storage.AllocatedBytes + (long)_config.NumLayers * _slotMasked[0].Length * (sizeof(float) + sizeof(bool));

    /// <summary>Tokens cached in <paramref name="layer"/>.</summary>
    public int LayerLength(int layer) => _layerLength[layer];

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

    /// <summary>Remembers every count, for a <see cref="Rollback"/> to this point; allocates nothing.</summary>
    public void Checkpoint()
    {
        int layers = _config.NumLayers;
        _layerLength.CopyTo(_saved, 0);
        _layerMaskedSlots.CopyTo(_saved, layers);
        _layerRealTokens.CopyTo(_saved, 2 * layers);
        (_saved[3 * layers], _saved[3 * layers + 1]) = (Length, NextPosition);
        Storage.Checkpoint();
    }

    /// <summary>Forgets every token added since the last <see cref="Checkpoint"/> (the slots they took are free again).</summary>
    public void Rollback()
    {
        int layers = _config.NumLayers;
        _saved.AsSpan(0, layers).CopyTo(_layerLength);
        _saved.AsSpan(layers, layers).CopyTo(_layerMaskedSlots);
        _saved.AsSpan(2 * layers, layers).CopyTo(_layerRealTokens);
        (Length, NextPosition) = (_saved[3 * layers], _saved[3 * layers + 1]);
        Storage.Rollback();
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
    /// Grows the keys, values and slot records of every layer to hold at least <paramref name="slots"/> tokens (never past
    /// the context length); the records at least double, as the storage does.
    /// </summary>
    public void EnsureSlots(int slots)
    {
        Storage.EnsureCapacity(slots);
        if (slots <= _slotMasked[0].Length) return;
        int records = Math.Min(_contextLength, Math.Max(slots, 2 * _slotMasked[0].Length));
        for (int l = 0; l < _config.NumLayers; l++)
        {
            Array.Resize(ref _slotPositionValue[l], records);
            Array.Resize(ref _slotMasked[l], records);
        }
    }
}
