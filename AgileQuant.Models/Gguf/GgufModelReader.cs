using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Reads a LLaMA-family GGUF v3 model (<c>general.architecture = "llama"</c>, the layout of llama.cpp's
/// <c>convert_hf_to_gguf.py</c>): <c>llama.*</c> metadata into a <see cref="TransformerConfig"/> and the
/// <c>token_embd</c> / <c>blk.N.*</c> / <c>output_norm</c> / <c>output</c> tensors into <see cref="TransformerWeights"/>.
/// </summary>
/// <remarks>
/// llama.cpp's converter permutes Hugging Face's q/k rows back to Meta's interleaved layout, where RoPE rotates
/// adjacent pairs (x[2i], x[2i+1]); so the config says <see cref="RotaryPairing.Adjacent"/> and no row is permuted.
/// Tensor types: those <see cref="GgmlTypeTraits"/> reads, in the format its table gives (see <see cref="GgufTensorConverter"/>).
/// </remarks>
public static class GgufModelReader
{
    /// <summary>The <c>general.architecture</c> value this reader accepts.</summary>
    public const string Architecture = "llama";

    /// <summary>Reads the runtime configuration from <paramref name="gguf"/>'s metadata.</summary>
    /// <exception cref="ModelFormatException">A key is missing, out of range, or names an unsupported feature.</exception>
    public static TransformerConfig ReadConfig(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string architecture = gguf.GetString("general.architecture");
        if (architecture != Architecture)
            throw new ModelFormatException(gguf.FilePath, null, $"expected general.architecture '{Architecture}', found '{architecture}' (not supported)");
        const string a = Architecture + ".";
        if (gguf.TryGetValue(a + "rope.scaling.type", out _) && gguf.GetString(a + "rope.scaling.type") is not "none" and string scaling)
            throw new ModelFormatException(gguf.FilePath, null, $"expected no RoPE scaling, found {a}rope.scaling.type '{scaling}' (not supported)");
        if (gguf.TryGetValue(a + "expert_count", out _) && gguf.GetInteger(a + "expert_count") > 0)
            throw new ModelFormatException(gguf.FilePath, null, $"expected a dense model, found {a}expert_count {gguf.GetInteger(a + "expert_count")} (mixture of experts is not supported)");
        int heads = PositiveInt(gguf, a + "attention.head_count");
        int hidden = PositiveInt(gguf, a + "embedding_length");
        GgufTensorInfo? embedding = gguf.FindTensor("token_embd.weight");
        int vocab = gguf.TryGetValue(a + "vocab_size", out _) ? PositiveInt(gguf, a + "vocab_size")
            : embedding is { Shape.Count: 2 } && embedding.Shape[1] <= int.MaxValue ? (int)embedding.Shape[1]
            : gguf.TryGetValue("tokenizer.ggml.tokens", out _) ? gguf.GetArray<string>("tokenizer.ggml.tokens").Count
            : throw new ModelFormatException(gguf.FilePath, "token_embd.weight", "expected a 2-D token embedding or llama.vocab_size to give the vocabulary size, found neither");
        var config = new TransformerConfig
        {
            Family = "llama",
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = PositiveInt(gguf, a + "feed_forward_length"),
            NumLayers = PositiveInt(gguf, a + "block_count"),
            NumHeads = heads,
            NumKvHeads = gguf.TryGetValue(a + "attention.head_count_kv", out _) ? PositiveInt(gguf, a + "attention.head_count_kv") : heads,
            MaxSequenceLength = PositiveInt(gguf, a + "context_length"),
            Norm = NormKind.RmsNorm,
            NormEpsilon = (float)PositiveFloat(gguf, a + "attention.layer_norm_rms_epsilon", 1e-5),
            Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.Adjacent,
            RotaryTheta = (float)PositiveFloat(gguf, a + "rope.freq_base", 10000),
            Mlp = MlpKind.SwiGlu,
            BosTokenId = TokenId(gguf, "tokenizer.ggml.bos_token_id", 1),
            EosTokenId = TokenId(gguf, "tokenizer.ggml.eos_token_id", 2),
        };
        try { config.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(gguf.FilePath, null, e.Message, e); }
        if (gguf.TryGetValue(a + "rope.dimension_count", out _) && gguf.GetInteger(a + "rope.dimension_count") != config.HeadDim)
            throw new ModelFormatException(gguf.FilePath, null,
                $"expected {a}rope.dimension_count equal to the head size {config.HeadDim}, found {gguf.GetInteger(a + "rope.dimension_count")} (partial rotary is not supported)");
        return config;
    }

    /// <summary>Maps <paramref name="gguf"/>'s file and reads every tensor <paramref name="config"/> implies; no other tensor may be present.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, misshapen, of an unsupported type, or holds a non-finite scale.</exception>
    public static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentNullException.ThrowIfNull(config);
        using GgufTensorData data = GgufTensorData.Open(gguf);
        var t = new GgufTensorConverter(data);
        int d = config.HiddenSize, f = config.IntermediateSize, kv = config.KvDim, v = config.VocabSize, q = config.NumHeads * config.HeadDim;
        LinearLayer Linear(string name, int rows, int cols) => new(t.TakeMatrix(name, rows, cols));
        NormLayer Norm(string name) => new(NormKind.RmsNorm, t.TakeVector(name, d), null, config.NormEpsilon);
        var layers = new LayerWeights[config.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string l = $"blk.{i}.";
            layers[i] = new LayerWeights
            {
                AttentionNorm = Norm(l + "attn_norm.weight"),
                Query = Linear(l + "attn_q.weight", q, d),
                Key = Linear(l + "attn_k.weight", kv, d),
                Value = Linear(l + "attn_v.weight", kv, d),
                Output = Linear(l + "attn_output.weight", d, q),
                MlpNorm = Norm(l + "ffn_norm.weight"),
                Gate = Linear(l + "ffn_gate.weight", f, d),
                Up = Linear(l + "ffn_up.weight", f, d),
                Down = Linear(l + "ffn_down.weight", d, f),
            };
        }
        float[] embedding = t.TakeTable("token_embd.weight", v, d);
        // Tied models omit output.weight: the head multiplies by the embedding in its stored format.
        IWeightMatrix head = t.Has("output.weight") ? t.TakeMatrix("output.weight", v, d)
            : gguf.FindTensor("token_embd.weight")!.Type is GgmlType.Q8_0 or GgmlType.Q4_0 ? t.TakeMatrix("token_embd.weight", v, d)
            : new Fp32Matrix(embedding, v, d);
        var weights = new TransformerWeights
        {
            Config = config,
            TokenEmbedding = embedding,
            Layers = layers,
            FinalNorm = Norm("output_norm.weight"),
            LmHead = new LinearLayer(head),
        };
        t.RequireAllTaken();
        return weights;
    }

    /// <summary>
    /// Bytes the weights of <paramref name="gguf"/> take once loaded, from each type's <see cref="GgmlTypeTraits.LoadFormat"/>:
    /// packed formats (Q4_0, Q8_0) as stored plus their FP32 scales (bounded by twice the stored bytes), FP32 ones
    /// (F16/BF16 and the types dequantized at load) four bytes per weight, token embeddings dequantized.
    /// Checked against a budget before any tensor is read.
    /// </summary>
    public static Int128 LoadedBytes(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        Int128 total = 0;
        foreach (GgufTensorInfo tensor in gguf.Tensors)
            total += tensor.Name == "token_embd.weight" || GgmlTypeTraits.Find(tensor.Type)?.LoadFormat is not (GgmlLoadFormat.PackedInt4 or GgmlLoadFormat.Int8Rows)
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

    private static int PositiveInt(GgufFile gguf, string key)
    {
        long value = gguf.GetInteger(key);
        return value is > 0 and <= int.MaxValue ? (int)value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected an integer in 1..{int.MaxValue}, found {value}");
    }

    private static double PositiveFloat(GgufFile gguf, string key, double fallback)
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
