namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>Which storage a context's KV cache uses, resolved from <see cref="RuntimeOptions.KvCache"/> and the attention quantization.</summary>
internal enum CacheLayout
{
    /// <summary>FP32, transposed slot rows (<see cref="TransposedStorage"/>), read by <see cref="CausalAttention{TSlots}"/>.</summary>
    F32,

    /// <summary>The paper's KV codes (int8 + FP32 scale per token and head), transposed slot rows, read as <see cref="F32"/> is.</summary>
    SchemeCodes,

    /// <summary><see cref="KvCacheType.F16"/>: fp16 key and value rows in pages (<see cref="PagedKvStorage{TKeys, TValues}"/>), read by <see cref="StreamingAttention{TKeys, TValues}"/>.</summary>
    F16,

    /// <summary><see cref="KvCacheType.Q8"/>: per-channel int8 keys (<see cref="Q8ChannelKeys"/>), q8_0-style value rows (<see cref="Q8Rows"/>).</summary>
    Q8,

    /// <summary><see cref="KvCacheType.Q4"/>: per-channel 4-bit keys (<see cref="Q4ChannelKeys"/>), rotated 4-bit value rows (<see cref="Q4Rows{TRotation}"/>).</summary>
    Q4,

    /// <summary>Q8 with per-token keys (llama.cpp's q8_0 for keys too): only to measure what per-channel keys buy.</summary>
    Q8TokenKeys,

    /// <summary>Q4 with per-token rotated keys: only to measure what per-channel keys buy.</summary>
    Q4TokenKeys,

    /// <summary>Q4 with per-token keys and values, neither rotated: only to measure what the rotation buys.</summary>
    Q4TokenKeysUnrotated,
}

/// <summary>
/// The keys and values of one context, per layer and slot, in one <see cref="CacheLayout"/>: written a block of rows at
/// a time (<see cref="Store"/>), grown as the context fills (<see cref="EnsureCapacity"/>), never shrunk until dropped.
/// </summary>
internal abstract unsafe class CacheStorage
{
    /// <summary>Slots every layer can hold without growing.</summary>
    public abstract int Capacity { get; }

    /// <summary>Bytes allocated for keys and values, all layers.</summary>
    public abstract long AllocatedBytes { get; }

    /// <summary>Grows every layer to hold at least <paramref name="slots"/> slots (at most the context length).</summary>
    public abstract void EnsureCapacity(int slots);

    /// <summary>
    /// Writes <paramref name="rows"/> rows of keys and values (each (rows, KvDim)) into <paramref name="layer"/>'s slots from
    /// <paramref name="firstSlot"/>. Different slots may be written from different threads at once.
    /// </summary>
    public abstract void Store(int layer, int firstSlot, float* keyRows, float* valueRows, int rows);

    /// <summary>
    /// Completes the storing of a chunk's rows in <paramref name="layer"/> after every <see cref="Store"/> of them: slots
    /// [<paramref name="start"/>, <paramref name="start"/> + <paramref name="n"/>), keys also in <paramref name="keyRows"/>
    /// (n, KvDim); after it, attention may read them.
    /// </summary>
    public virtual void FinishLayer(int layer, int start, int n, float[] keyRows) { }

    /// <summary>
    /// Writes the key and value that slot <paramref name="slot"/> of head <paramref name="kvHead"/> in <paramref name="layer"/>
    /// stands for (headDim each), as attention reads them; <paramref name="layerLength"/>: the layer's tokens stored.
    /// </summary>
    public abstract void Decode(int layer, int kvHead, int slot, int layerLength, Span<float> key, Span<float> value);

    /// <summary>Remembers what <see cref="Rollback"/> restores (the storage's own state beyond the slots).</summary>
    public virtual void Checkpoint() { }

    /// <summary>Returns to the last <see cref="Checkpoint"/>; slots written since are free again.</summary>
    public virtual void Rollback() { }

    /// <summary>Bytes one token takes in one layer (keys and values) with <paramref name="layout"/>, on average over a key group.</summary>
    public static double BytesPerTokenPerLayer(CacheLayout layout, TransformerConfig config)
    {
        int hd = config.HeadDim;
        double perHead = layout switch
        {
            CacheLayout.F32 => 2 * hd * sizeof(float),
            CacheLayout.SchemeCodes => 2 * (hd + sizeof(float)),
            CacheLayout.F16 => 2 * F16Rows.RowBytes(hd),
            CacheLayout.Q8 => (double)Q8ChannelKeys.GroupBytes(hd) / Q8ChannelKeys.GroupSlots + Q8Rows.RowBytes(hd),
            CacheLayout.Q4 => (double)Q4ChannelKeys.GroupBytes(hd) / Q4ChannelKeys.GroupSlots + Q4Rows<HadamardRotation>.RowBytes(hd),
            CacheLayout.Q8TokenKeys => 2 * Q8Rows.RowBytes(hd),
            _ => 2 * Q4Rows<HadamardRotation>.RowBytes(hd),
        };
        return config.NumKvHeads * perHead;
    }

    /// <summary>A storage of <paramref name="layout"/> for <paramref name="config"/>, with room for nothing yet.</summary>
    public static CacheStorage Create(CacheLayout layout, TransformerConfig config, int contextLength, int kvCacheBits) => layout switch
    {
        CacheLayout.F32 => new TransposedStorage(config, contextLength, codeBits: 0),
        CacheLayout.SchemeCodes => new TransposedStorage(config, contextLength, kvCacheBits),
        CacheLayout.F16 => new PagedKvStorage<RowKeys<F16Rows>, F16Rows>(config, contextLength),
        CacheLayout.Q8 => new PagedKvStorage<Q8ChannelKeys, Q8Rows>(config, contextLength),
        CacheLayout.Q4 => new PagedKvStorage<Q4ChannelKeys, Q4Rows<HadamardRotation>>(config, contextLength),
        CacheLayout.Q8TokenKeys => new PagedKvStorage<RowKeys<Q8Rows>, Q8Rows>(config, contextLength),
        CacheLayout.Q4TokenKeys => new PagedKvStorage<RowKeys<Q4Rows<HadamardRotation>>, Q4Rows<HadamardRotation>>(config, contextLength),
        _ => new PagedKvStorage<RowKeys<Q4Rows<NoRotation>>, Q4Rows<NoRotation>>(config, contextLength),
    };
}
