using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// Keys in groups of <typeparamref name="TKeys"/> and values as rows of <typeparamref name="TValues"/> (one per token and
/// key/value head), in pages of <see cref="PageSlots"/> slots allocated as the context fills. A page is
/// (NumKvHeads, PageSlots / GroupSlots, group bytes) for keys and (NumKvHeads, PageSlots, row bytes) for values, so a
/// head's consecutive slots are consecutive bytes that attention streams through (<see cref="StreamingAttention{TKeys, TValues}"/>).
/// Pages live on the pinned object heap and are never copied or moved: their addresses are handed out as pointers.
/// </summary>
/// <remarks>
/// Keys of a group whose last slot has not arrived wait as fp16 rows (<see cref="PartialKey"/>), two buffers per layer:
/// a forward pass that completes the partial group it started with writes the next partial group into the other buffer,
/// so the one it started with is still whole if the pass is rolled back (<see cref="Rollback"/>).
/// </remarks>
internal sealed unsafe class PagedKvStorage<TKeys, TValues> : CacheStorage where TKeys : IKeyFormat where TValues : IKvRows
{
    /// <summary>Slots per page: a whole number of key groups and of <see cref="StreamingAttention{TKeys, TValues}.SlotBlock"/> blocks.</summary>
    public const int PageSlots = 256;

    private readonly TransformerConfig _config;
    private readonly int _contextLength, _group, _groupBytes, _rowBytes, _keyPageBytes, _valuePageBytes;
    private readonly List<byte[]> _pages = [];         // every page, kept reachable
    private readonly byte*[][] _keyPages, _valuePages;  // per layer: page p's address, p < pages allocated
    private readonly Half*[] _partial;                  // per layer: (2, NumKvHeads, GroupSlots, HeadDim) keys of the partial group, pinned
    private readonly int _partialLength;
    private readonly int[] _partialBuffer, _savedPartialBuffer; // (NumLayers): which of the two holds the partial group, now and at the checkpoint
    private int _pageCount;

    public PagedKvStorage(TransformerConfig config, int contextLength)
    {
        _config = config;
        _contextLength = contextLength;
        _group = TKeys.GroupSlots;
        _groupBytes = TKeys.GroupBytes(config.HeadDim);
        _rowBytes = TValues.RowBytes(config.HeadDim);
        _keyPageBytes = config.NumKvHeads * (PageSlots / _group) * _groupBytes;
        _valuePageBytes = config.NumKvHeads * PageSlots * _rowBytes;
        int pages = (contextLength + PageSlots - 1) / PageSlots, layers = config.NumLayers;
        _keyPages = new byte*[layers][];
        _valuePages = new byte*[layers][];
        _partial = new Half*[layers];
        _partialLength = _group > 1 ? 2 * config.NumKvHeads * _group * config.HeadDim : 0;
        for (int l = 0; l < layers; l++)
        {
            (_keyPages[l], _valuePages[l]) = (new byte*[pages], new byte*[pages]);
            if (_group > 1) _partial[l] = (Half*)NewPage(_partialLength * sizeof(ushort));
        }
        _partialBuffer = new int[layers];
        _savedPartialBuffer = new int[layers];
    }

    /// <summary>Bytes of one stored value row.</summary>
    public int ValueRowBytes => _rowBytes;

    /// <summary>Bytes of one stored key group.</summary>
    public int KeyGroupBytes => _groupBytes;

    public override int Capacity => _pageCount * PageSlots;

    public override long AllocatedBytes => (long)_pageCount * _config.NumLayers * (_keyPageBytes + _valuePageBytes) + (long)_config.NumLayers * _partialLength * sizeof(ushort);

    /// <summary>The stored key group holding <paramref name="slot"/> (of head <paramref name="kvHead"/>, <paramref name="layer"/>); the head's next groups in the page follow it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* KeyGroup(int layer, int kvHead, int slot) =>
        _keyPages[layer][slot / PageSlots] + ((nint)kvHead * (PageSlots / _group) + slot % PageSlots / _group) * _groupBytes;

    /// <summary>The value row of <paramref name="slot"/>; the head's next slots in the page follow it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* ValueRow(int layer, int kvHead, int slot) =>
        _valuePages[layer][slot / PageSlots] + ((nint)kvHead * PageSlots + slot % PageSlots) * _rowBytes;

    /// <summary>The fp16 key row of <paramref name="slot"/>, in the partial group (not yet stored as a group) of <paramref name="layer"/>.</summary>
    public Half* PartialKey(int layer, int kvHead, int slot) => PartialRow(layer, _partialBuffer[layer], kvHead, slot);

    private Half* PartialRow(int layer, int buffer, int kvHead, int slot) =>
        _partial[layer] + (((nint)buffer * _config.NumKvHeads + kvHead) * _group + slot % _group) * _config.HeadDim;

    public override void EnsureCapacity(int slots)
    {
        int needed = (Math.Min(slots, _contextLength) + PageSlots - 1) / PageSlots;
        for (; _pageCount < needed; _pageCount++)
            for (int l = 0; l < _config.NumLayers; l++)
            {
                _keyPages[l][_pageCount] = NewPage(_keyPageBytes);
                _valuePages[l][_pageCount] = NewPage(_valuePageBytes);
            }
    }

    private byte* NewPage(int bytes)
    {
        byte[] page = GC.AllocateUninitializedArray<byte>(bytes, pinned: true);
        _pages.Add(page);
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(page));
    }

    // values: row(layer, h, firstSlot + i) ← encode(v[i, h·HeadDim ..]); keys of one-slot groups likewise (wider groups: FinishLayer)
    public override void Store(int layer, int firstSlot, float* keyRows, float* valueRows, int rows)
    {
        int kv = _config.KvDim, hd = _config.HeadDim;
        for (int i = 0; i < rows; i++)
            for (int h = 0; h < _config.NumKvHeads; h++)
            {
                TValues.Encode(valueRows + (nint)i * kv + h * hd, ValueRow(layer, h, firstSlot + i), hd);
                if (_group == 1) TKeys.EncodeGroup(keyRows + (nint)i * kv + h * hd, KeyGroup(layer, h, firstSlot + i), hd);
            }
    }

    /// <summary>
    /// Stores the key groups the chunk's rows <paramref name="keyRows"/> (n, KvDim), at slots [start, start + n), complete
    /// (with the partial group's earlier keys), and keeps the rows of a new partial group as fp16.
    /// </summary>
    public override void FinishLayer(int layer, int start, int n, float[] keyRows)
    {
        if (_group == 1) return;
        int g = _group, hd = _config.HeadDim, kv = _config.KvDim, end = start + n;
        int firstGroup = start / g, completeEnd = end / g; // groups [firstGroup, completeEnd) are complete now
        int buffer = _partialBuffer[layer];
        // a new partial group after a completed one goes to the other buffer: the one the pass started with stays whole
        int tailBuffer = completeEnd > firstGroup ? 1 - buffer : buffer;
        float* rows = stackalloc float[g * hd];
        fixed (float* keys = keyRows)
            for (int h = 0; h < _config.NumKvHeads; h++)
            {
                for (int group = firstGroup; group < completeEnd; group++)
                {
                    for (int t = 0; t < g; t++)
                    {
                        int slot = group * g + t;
                        if (slot < start) KvVectors.HalfToSingle(PartialRow(layer, buffer, h, slot), rows + t * hd, hd);
                        else new ReadOnlySpan<float>(keys + (nint)(slot - start) * kv + h * hd, hd).CopyTo(new Span<float>(rows + t * hd, hd));
                    }
                    TKeys.EncodeGroup(rows, KeyGroup(layer, h, group * g), hd);
                }
                for (int slot = Math.Max(start, completeEnd * g); slot < end; slot++)
                    System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(keys + (nint)(slot - start) * kv + h * hd, hd), new Span<Half>(PartialRow(layer, tailBuffer, h, slot), hd));
            }
        if (end % g != 0) _partialBuffer[layer] = tailBuffer;
    }

    public override void Decode(int layer, int kvHead, int slot, int layerLength, Span<float> key, Span<float> value)
    {
        int hd = _config.HeadDim, groupStart = slot / _group * _group;
        fixed (float* k = key, v = value)
        {
            TValues.Decode(ValueRow(layer, kvHead, slot), v, hd);
            if (groupStart + _group > layerLength)
            {
                KvVectors.HalfToSingle(PartialKey(layer, kvHead, slot), k, hd);
                return;
            }
            float[] rows = new float[_group * hd];
            fixed (float* r = rows) TKeys.DecodeGroup(KeyGroup(layer, kvHead, slot), r, hd);
            rows.AsSpan((slot - groupStart) * hd, hd).CopyTo(key);
        }
    }

    public override void Checkpoint() => _partialBuffer.CopyTo(_savedPartialBuffer, 0);

    public override void Rollback() => _savedPartialBuffer.CopyTo(_partialBuffer, 0);
}
