using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Reads a GGUF v3 model of any family in <see cref="ArchitectureRegistry"/> (by <c>general.architecture</c>): the
/// hyper-parameter keys every family shares (<c>{arch}.block_count</c>, <c>{arch}.embedding_length</c>, ... as
/// llama.cpp names them) plus the family's own into a <see cref="TransformerConfig"/>, and the tensors under the
/// family's GGUF names (<c>token_embd</c>, <c>blk.N.*</c>, <c>output_norm</c>, <c>output</c>) into <see cref="TransformerWeights"/>.
/// </summary>
/// <remarks>
/// Q/K rows are taken as stored: the config's <see cref="RotaryPairing"/> is the family's GGUF layout
/// (<see cref="ArchitectureDescription.GgufRotaryPairing"/>; LLaMA's is <see cref="RotaryPairing.Adjacent"/>).
/// Tensor types: those <see cref="GgmlTypeTraits"/> reads, in the format its table gives (see <see cref="GgufTensorConverter"/>).
/// </remarks>
public static class GgufModelReader
{
    /// <summary>Reads the runtime configuration from <paramref name="gguf"/>'s metadata.</summary>
    /// <exception cref="ModelFormatException">The architecture is not supported, or a key is missing, out of range, or names an unsupported feature.</exception>
    public static TransformerConfig ReadConfig(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        return ReadConfig(gguf, ArchitectureRegistry.ForGguf(gguf));
    }

    /// <summary>Reads the configuration of a <paramref name="family"/> model from <paramref name="gguf"/>'s metadata.</summary>
    internal static TransformerConfig ReadConfig(GgufFile gguf, ArchitectureDescription family)
    {
        string a = family.GgufKeyPrefix ?? throw new ArgumentException($"The '{family.Family}' family has no GGUF form.", nameof(family));
        float ropeScaling = RotaryScalingFactor(gguf, a);
        if (gguf.TryGetValue(a + "expert_count", out _) && gguf.GetInteger(a + "expert_count") > 0)
            throw new ModelFormatException(gguf.FilePath, null, $"expected a dense model, found {a}expert_count {gguf.GetInteger(a + "expert_count")} (mixture of experts is not supported)");
        int heads = PositiveInt(gguf, a + "attention.head_count");
        int hidden = PositiveInt(gguf, a + "embedding_length");
        int headSize = HeadSize(gguf, a, hidden, heads);
        if (headSize == 0 && hidden % heads != 0)
            throw new ModelFormatException(gguf.FilePath, null,
                $"metadata '{a}attention.head_count' = {heads} does not divide '{a}embedding_length' = {hidden}, and no '{a}attention.key_length' gives the head size");
        int kvHeads = gguf.TryGetValue(a + "attention.head_count_kv", out _) ? PositiveInt(gguf, a + "attention.head_count_kv") : heads;
        if (heads % kvHeads != 0)
            throw new ModelFormatException(gguf.FilePath, null, $"metadata '{a}attention.head_count_kv' = {kvHeads} does not divide '{a}attention.head_count' = {heads}");
        string embeddingName = family.GgufNames!.Global(ModelTensor.TokenEmbedding) + ".weight";
        GgufTensorInfo? embedding = gguf.FindTensor(embeddingName);
        int vocab = gguf.TryGetValue(a + "vocab_size", out _) ? PositiveInt(gguf, a + "vocab_size")
            : embedding is { Shape.Count: 2 } && embedding.Shape[1] <= int.MaxValue ? (int)embedding.Shape[1]
            : gguf.TryGetValue("tokenizer.ggml.tokens", out _) ? gguf.GetArray<string>("tokenizer.ggml.tokens").Count
            : throw new ModelFormatException(gguf.FilePath, embeddingName, $"expected a 2-D token embedding or {a}vocab_size to give the vocabulary size, found neither");
        var config = new TransformerConfig
        {
            Family = family.Family,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = PositiveInt(gguf, a + "feed_forward_length"),
            NumLayers = PositiveInt(gguf, a + "block_count"),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            MaxSequenceLength = PositiveInt(gguf, a + "context_length"),
            Norm = family.Norm,
            NormEpsilon = (float)PositiveFloat(gguf, a + NormEpsilonKey(family.Norm), 1e-5),
            Positions = family.Positions,
            RotaryPairing = family.GgufRotaryPairing,
            RotaryTheta = (float)PositiveFloat(gguf, a + "rope.freq_base", 10000),
            RotaryScalingFactor = ropeScaling,
            Mlp = family.Mlp,
            EmbeddingNorm = family.EmbeddingNorm,
            HeadSize = headSize,
            QueryKeyNorm = family.QueryKeyNorm,
            PostNorms = family.PostNorms,
            BosTokenId = TokenId(gguf, "tokenizer.ggml.bos_token_id", 1),
            EosTokenId = TokenId(gguf, "tokenizer.ggml.eos_token_id", 2),
        };
        RequireLayerTensors(gguf, family, config.NumLayers, a + "block_count");
        config = family.ReadGgufConfig(gguf, config);
        if (family.GgufNames!.Global(ModelTensor.RotaryFrequencies) is { } frequencies && gguf.FindTensor(frequencies + ".weight") is { } stored)
            config = config with { RotaryFrequencyFactors = ReadFrequencyFactors(gguf, stored, config) };
        ConfigValueChecks.Require(gguf.FilePath, config,
            new ConfigKeys($"metadata '{a}{NormEpsilonKey(family.Norm)}'", $"metadata '{a}rope.freq_base'", $"metadata '{a}context_length'", "the family's learned-position offset"));
        try { config.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(gguf.FilePath, null, e.Message, e); }
        if (config.Positions == PositionKind.Rotary && gguf.TryGetValue(a + "rope.dimension_count", out _) && gguf.GetInteger(a + "rope.dimension_count") != config.HeadDim)
            throw new ModelFormatException(gguf.FilePath, null,
                $"expected {a}rope.dimension_count equal to the head size {config.HeadDim}, found {gguf.GetInteger(a + "rope.dimension_count")} (partial rotary is not supported)");
        return config;
    }

    /// <summary>
    /// The linear RoPE scaling factor as llama.cpp reads it: <c>rope.scaling.factor</c> (or the older <c>rope.scale_linear</c>;
    /// 0 = none) under <c>rope.scaling.type</c> <c>linear</c> (the default) or <c>none</c>; other types are refused.
    /// </summary>
    private static float RotaryScalingFactor(GgufFile gguf, string a)
    {
        string? type = gguf.TryGetValue(a + "rope.scaling.type", out _) ? gguf.GetString(a + "rope.scaling.type") : null;
        if (type is not (null or "none" or "linear"))
            throw new ModelFormatException(gguf.FilePath, null, $"expected RoPE scaling 'none' or 'linear', found {a}rope.scaling.type '{type}' (not supported)");
        string? key = new[] { a + "rope.scaling.factor", a + "rope.scale_linear" }.FirstOrDefault(k => gguf.TryGetValue(k, out _));
        double factor = key is null ? 0 : gguf.GetFloat(key);
        if (key is not null && !(factor >= 0 && double.IsFinite(factor) && factor < float.MaxValue))
            throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a positive finite number (or 0 for none), found {factor}");
        if (factor is 0 or 1) return 1f;
        return type == "none"
            ? throw new ModelFormatException(gguf.FilePath, null, $"contradictory RoPE scaling: {a}rope.scaling.type is 'none' but {key} is {factor}")
            : (float)factor;
    }

    /// <summary>
    /// The head size from <c>attention.key_length</c> / <c>value_length</c> (llama.cpp's n_embd_head_k/v, default
    /// hidden / heads) as <see cref="TransformerConfig.HeadSize"/>: 0 when it is the default.
    /// </summary>
    private static int HeadSize(GgufFile gguf, string a, int hidden, int heads)
    {
        int? Length(string key) => gguf.TryGetValue(a + key, out _) ? PositiveInt(gguf, a + key) : null;
        int? keyLength = Length("attention.key_length"), valueLength = Length("attention.value_length");
        int size = keyLength ?? valueLength ?? 0;
        if (keyLength is not null && valueLength is not null && keyLength != valueLength)
            throw new ModelFormatException(gguf.FilePath, null,
                $"expected {a}attention.key_length equal to {a}attention.value_length, found {keyLength} and {valueLength} (different key and value head sizes are not supported)");
        if (size == 0 || (long)size * heads == hidden) return 0;
        if (keyLength is null || valueLength is null)
            throw new ModelFormatException(gguf.FilePath, null,
                $"expected both {a}attention.key_length and {a}attention.value_length for a head size {size} other than {a}embedding_length / head_count, found only one");
        return size;
    }

    /// <summary>The per-dimension RoPE frequency factors of the <c>rope_freqs</c> tensor: F32, HeadDim / 2 of them, finite and positive.</summary>
    private static RotaryFrequencyFactors ReadFrequencyFactors(GgufFile gguf, GgufTensorInfo tensor, TransformerConfig config)
    {
        int half = config.HeadDim / 2;
        if (tensor.Type != GgmlType.F32 || tensor.Shape.Count != 1 || tensor.Shape[0] != half)
            throw new ModelFormatException(gguf.FilePath, tensor.Name, $"expected F32 [{half}] (one factor per rotated pair of the head size {config.HeadDim}), found {tensor.Type} [{string.Join(", ", tensor.Shape)}]");
        var factors = new float[half];
        gguf.ReadTensorData(tensor, System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan()));
        for (int i = 0; i < half; i++)
            if (!(float.IsFinite(factors[i]) && factors[i] > 0))
                throw new ModelFormatException(gguf.FilePath, tensor.Name, $"expected positive finite RoPE frequency factors, found {factors[i]} at element {i}");
        return new RotaryFrequencyFactors(factors);
    }

    /// <summary>Maps <paramref name="gguf"/>'s file and reads every tensor <paramref name="config"/> implies under the family's GGUF names; no other tensor may be present.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, misshapen, of an unsupported type, or holds a non-finite scale.</exception>
    public static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentNullException.ThrowIfNull(config);
        return ReadWeights(gguf, config, ArchitectureRegistry.ForGguf(gguf));
    }

    /// <summary>
    /// Reads the weights of <paramref name="gguf"/> as <see cref="ReadWeights(GgufFile, TransformerConfig)"/> does, each matrix
    /// handed to <paramref name="kernel"/>'s <see cref="IMatMulKernel.Prepare"/> as soon as it is converted, so that its
    /// row-major copy is dropped before the next tensor is read: the weights are held once, in the kernels' layouts, plus
    /// one tensor in flight (docs/architecture.md, "Loading").
    /// </summary>
    internal static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config, IMatMulKernel kernel) =>
        ReadWeights(gguf, config, ArchitectureRegistry.ForGguf(gguf), kernel);

    /// <summary>Reads the weights of a <paramref name="family"/> model of <paramref name="config"/> from <paramref name="gguf"/>; <paramref name="kernel"/>: as above, or null to leave them as read.</summary>
    internal static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config, ArchitectureDescription family, IMatMulKernel? kernel = null)
    {
        using GgufTensorData data = GgufTensorData.Open(gguf);
        return DecoderWeightsReader.Read(family, config, family.GgufNames!, "", new TensorSource(gguf, new GgufTensorConverter(data), kernel));
    }

    /// <summary>The GGUF key (after the family prefix) of the epsilon of <paramref name="norm"/>: llama.cpp's <c>LLM_KV_ATTENTION_LAYERNORM_(RMS_)EPS</c>.</summary>
    internal static string NormEpsilonKey(NormKind norm) => norm == NormKind.RmsNorm ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";

    /// <summary>
    /// Bytes the weights of <paramref name="gguf"/> take once loaded, from each type's <see cref="GgmlTypeTraits.LoadFormat"/>:
    /// packed formats (Q4_0, the super-block 4-bit types, and the Q5/Q6/Q8 types as grouped int8) as stored plus their wider scales and padding (bounded by twice the stored bytes), FP32 ones
    /// (F16/BF16 and the types dequantized at load) four bytes per weight; token embeddings of a packed type as stored
    /// (<see cref="GgmlEmbeddingRows"/>, counted twice for a tied head's packed copy), of the other types four bytes per weight.
    /// Checked against a budget before any tensor is read.
    /// </summary>
    public static Int128 LoadedBytes(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        Int128 total = 0;
        foreach (GgufTensorInfo tensor in gguf.Tensors)
            total += GgmlTypeTraits.Find(tensor.Type)?.LoadsPacked != true
                ? (Int128)tensor.ElementCount * sizeof(float)
                : tensor.ByteSize * (Int128)2;
        return total;
    }

    /// <summary>Throws <see cref="ModelFormatException"/> when <see cref="LoadedBytes"/> exceeds <paramref name="maxBytes"/>.</summary>
    public static void EnforceBudget(GgufFile gguf, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        Int128 bytes = LoadedBytes(gguf);
        if (bytes > maxBytes)
            throw new ModelFormatException(gguf.FilePath, null,
                $"the tensors imply about {bytes} bytes of loaded weights, more than the loading budget of {maxBytes} bytes (ModelLoadOptions.MaxWeightBytes)");
    }

    /// <summary>
    /// Weights (rows × cols) from which a tensor's load collects its transient copies at once and the whole load ends with an
    /// aggressive collection: 2^22 (e.g. 2048 × 2048); below it the collector's own pace costs less than forced collections.
    /// </summary>
    internal const long LargeTensorElements = 1L << 22;

    /// <summary>GGUF tensors for <see cref="DecoderWeightsReader"/>, converted by <see cref="GgufTensorConverter"/>.</summary>
    private sealed class TensorSource(GgufFile gguf, GgufTensorConverter converter, IMatMulKernel? kernel) : ITensorSource
    {
        public string SourcePath => gguf.FilePath;

        public bool Has(string name) => converter.Has(name);

        public IWeightMatrix Matrix(string name, int rows, int cols) => Prepared(converter.TakeMatrix(name, rows, cols));

        // Repacked for the kernels now, tensor by tensor (a matrix no kernel of the set multiplies is left for the model to
        // refuse). The staging the conversion used is let go and collected before the repack allocates, and the row-major
        // copy the repack drops is collected after it, so the load holds the matrices read so far plus this one twice at
        // most (docs/architecture.md, "Loading").
        // Only for tensors of at least LargeTensorElements: a full collection costs in proportion to the whole process's heap
        // (an application's, not only the model's), and the copies of smaller tensors are not what sets the peak.
        private IWeightMatrix Prepared(IWeightMatrix matrix)
        {
            if (kernel is null || !kernel.Supports(matrix)) return matrix;
            bool large = (long)matrix.Rows * matrix.Cols >= LargeTensorElements;
            converter.ReleaseStaging();
            if (large) GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
            kernel.Prepare(matrix);
            if (large) GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
            return matrix;
        }

        public float[] Table(string name, int rows, int cols) => converter.TakeTable(name, rows, cols);

        public IEmbeddingRows? StoredTable(string name, int rows, int cols) => converter.TakeStoredTable(name, rows, cols);

        public float[] Vector(string name, int length) => converter.TakeVector(name, length);

        // Tied models omit output.weight: the head multiplies by the embedding in its stored format.
        public IWeightMatrix TiedHead(string embeddingName, float[]? embedding, int rows, int cols) =>
            embedding is null || GgmlTypeTraits.Find(gguf.FindTensor(embeddingName)!.Type)?.LoadsPacked == true
                ? Prepared(converter.TakeMatrix(embeddingName, rows, cols))
                : new Fp32Matrix(embedding, rows, cols);

        public void RequireAllTaken() => converter.RequireAllTaken();
    }

    /// <summary>
    /// Refuses a layer count that the tensors do not back before it sizes anything: every layer stores tensors under its
    /// prefix (<c>blk.N.</c>), so there can be no more layers than tensors, and the last one must have some.
    /// </summary>
    private static void RequireLayerTensors(GgufFile gguf, ArchitectureDescription family, int layers, string key)
    {
        string lastLayer = family.GgufNames!.InLayer(layers - 1, "");
        if (layers > gguf.Tensors.Count || !gguf.Tensors.Any(t => t.Name.StartsWith(lastLayer, StringComparison.Ordinal)))
            throw new ModelFormatException(gguf.FilePath, null,
                $"metadata '{key}': {layers} layers, but the file has no tensor of layer {layers - 1} ('{lastLayer}*'; {gguf.Tensors.Count} tensors in all)");
    }

    internal static int PositiveInt(GgufFile gguf, string key)
    {
        long value = gguf.GetInteger(key);
        return value is > 0 and <= int.MaxValue ? (int)value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected an integer in 1..{int.MaxValue}, found {value}");
    }

    /// <summary>The integer <paramref name="key"/> in 0..int.MaxValue, or <paramref name="fallback"/> when absent.</summary>
    internal static int NonNegativeInt(GgufFile gguf, string key, int fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        long value = gguf.GetInteger(key);
        return value is >= 0 and <= int.MaxValue ? (int)value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected an integer in 0..{int.MaxValue}, found {value}");
    }

    /// <summary>The float <paramref name="key"/>, 0 or positive and finite (0 = none), or <paramref name="fallback"/> when absent.</summary>
    internal static double NonNegativeFloat(GgufFile gguf, string key, double fallback) =>
        gguf.TryGetValue(key, out _) && gguf.GetFloat(key) == 0 ? 0 : PositiveFloat(gguf, key, fallback);

    /// <summary>The float <paramref name="key"/>, positive and finite, or <paramref name="fallback"/> when absent.</summary>
    internal static double PositiveFloat(GgufFile gguf, string key, double fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        double value = gguf.GetFloat(key);
        return value > 0 && double.IsFinite(value) && value < float.MaxValue ? value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a positive finite number, found {value}");
    }

    private static int TokenId(GgufFile gguf, string key, int fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        long id = gguf.GetInteger(key);
        return id is >= 0 and <= int.MaxValue ? (int)id
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a token id, found {id}");
    }
}
