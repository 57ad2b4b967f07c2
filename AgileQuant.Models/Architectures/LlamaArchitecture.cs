using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Hugging Face <c>LlamaForCausalLM</c>: RMSNorm, rotate-half RoPE (HF's conversion already permuted q/k
/// rows, so no further permutation), SwiGLU, grouped-query attention, no biases (unless attention_bias).
/// </summary>
public sealed class LlamaArchitecture : IHfArchitecture
{
    /// <inheritdoc />
    public IReadOnlyList<string> ModelTypes { get; } = ["llama"];

    /// <inheritdoc />
    public TransformerConfig ReadConfig(HfConfig c)
    {
        c.RequireAbsent("rope_scaling", "RoPE scaling is not supported yet");
        c.RequireAbsentOrEqual("hidden_act", "silu");
        int heads = c.GetInt("num_attention_heads");
        return new TransformerConfig
        {
            Family = "llama",
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = c.GetInt("hidden_size"),
            IntermediateSize = c.GetInt("intermediate_size"),
            NumLayers = c.GetInt("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = c.GetInt("num_key_value_heads", heads),
            MaxSequenceLength = c.GetInt("max_position_embeddings", 2048),
            Norm = NormKind.RmsNorm,
            NormEpsilon = c.GetFloat("rms_norm_eps", 1e-6f),
            Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.RotateHalf,
            RotaryTheta = c.GetFloat("rope_theta", 10000f),
            Mlp = MlpKind.SwiGlu,
            BosTokenId = c.GetInt("bos_token_id", 1),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }

    /// <inheritdoc />
    public TransformerWeights ReadWeights(TransformerConfig c, HfTensorReader t)
    {
        string p = t.ResolvePrefix("embed_tokens.weight", "model.", "");
        int d = c.HiddenSize, f = c.IntermediateSize, kv = c.KvDim, v = c.VocabSize;
        bool bias = t.Has($"{p}layers.0.self_attn.q_proj.bias");
        LinearLayer Linear(string name, int rows, int cols, bool withBias) =>
            new(t.TakeMatrix(name + ".weight", rows, cols), withBias ? t.Take(name + ".bias", rows) : null);
        NormLayer Norm(string name) => new(NormKind.RmsNorm, t.Take(name + ".weight", d), null, c.NormEpsilon);

        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string l = $"{p}layers.{i}.";
            layers[i] = new LayerWeights
            {
                AttentionNorm = Norm(l + "input_layernorm"),
                Query = Linear(l + "self_attn.q_proj", d, d, bias),
                Key = Linear(l + "self_attn.k_proj", kv, d, bias),
                Value = Linear(l + "self_attn.v_proj", kv, d, bias),
                Output = Linear(l + "self_attn.o_proj", d, d, bias),
                MlpNorm = Norm(l + "post_attention_layernorm"),
                Gate = Linear(l + "mlp.gate_proj", f, d, false),
                Up = Linear(l + "mlp.up_proj", f, d, false),
                Down = Linear(l + "mlp.down_proj", d, f, false),
            };
        }
        float[] embedding = t.Take(p + "embed_tokens.weight", v, d);
        // Tied configs omit lm_head.weight; untied ones must store it.
        LinearLayer head = t.Has("lm_head.weight")
            ? new LinearLayer(t.TakeMatrix("lm_head.weight", v, d))
            : new LinearLayer(new Intrinsics.Formats.Fp32Matrix(embedding, v, d));
        var weights = new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            Layers = layers,
            FinalNorm = Norm(p + "norm"),
            LmHead = head,
        };
        t.RequireAllTaken(".rotary_emb.inv_freq");
        return weights;
    }
}
