using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Hugging Face <c>BloomForCausalLM</c>: ALiBi, LayerNorm on the embeddings, fused <c>query_key_value</c>
/// whose output rows are laid out per head as [heads, 3, head_dim] (split at load into Q, K, V), GELU (tanh),
/// biases everywhere, head tied to the token embedding.
/// </summary>
public sealed class BloomArchitecture : IHfArchitecture
{
    /// <inheritdoc />
    public IReadOnlyList<string> ModelTypes { get; } = ["bloom"];

    /// <inheritdoc />
    public TransformerConfig ReadConfig(HfConfig c)
    {
        if (c.GetBool("apply_residual_connection_post_layernorm", false))
            throw new ModelFormatException(c.FilePath, null, "'apply_residual_connection_post_layernorm' is true, which is not supported");
        int hidden = c.GetInt("hidden_size", "n_embed");
        int heads = c.GetInt("n_head", "num_attention_heads");
        return new TransformerConfig
        {
            Family = "bloom",
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = 4 * hidden,
            NumLayers = c.GetInt("n_layer", "num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = heads,
            MaxSequenceLength = c.GetInt("seq_length", 2048),
            Norm = NormKind.LayerNorm,
            NormEpsilon = c.GetFloat("layer_norm_epsilon", 1e-5f),
            Positions = PositionKind.Alibi,
            Mlp = MlpKind.GeluTanh,
            EmbeddingNorm = true,
            BosTokenId = c.GetInt("bos_token_id", 1),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }

    /// <inheritdoc />
    public TransformerWeights ReadWeights(TransformerConfig c, HfTensorReader t)
    {
        string p = t.ResolvePrefix("word_embeddings.weight", "transformer.", "");
        int d = c.HiddenSize, f = c.IntermediateSize, v = c.VocabSize, heads = c.NumHeads, hd = c.HeadDim;
        LinearLayer Linear(string name, int rows, int cols) => new(t.TakeMatrix(name + ".weight", rows, cols), t.Take(name + ".bias", rows));
        NormLayer Norm(string name) => new(NormKind.LayerNorm, t.Take(name + ".weight", d), t.Take(name + ".bias", d), c.NormEpsilon);

        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string l = $"{p}h.{i}.";
            float[] fused = t.Take(l + "self_attention.query_key_value.weight", 3 * d, d); // (heads, 3, hd, d)
            float[] fusedBias = t.Take(l + "self_attention.query_key_value.bias", 3 * d);  // (heads, 3, hd)
            LinearLayer Part(int part)
            {
                // row (h, part, j) of the fused weight becomes row h·hd + j of the part's weight
                float[] w = new float[d * d], b = new float[d];
                for (int h = 0; h < heads; h++)
                    for (int j = 0; j < hd; j++)
                    {
                        int from = (h * 3 + part) * hd + j, to = h * hd + j;
                        fused.AsSpan(from * d, d).CopyTo(w.AsSpan(to * d, d));
                        b[to] = fusedBias[from];
                    }
                return new LinearLayer(new Fp32Matrix(w, d, d), b);
            }
            layers[i] = new LayerWeights
            {
                AttentionNorm = Norm(l + "input_layernorm"),
                Query = Part(0),
                Key = Part(1),
                Value = Part(2),
                Output = Linear(l + "self_attention.dense", d, d),
                MlpNorm = Norm(l + "post_attention_layernorm"),
                Up = Linear(l + "mlp.dense_h_to_4h", f, d),
                Down = Linear(l + "mlp.dense_4h_to_h", d, f),
            };
        }
        float[] embedding = t.Take(p + "word_embeddings.weight", v, d);
        var weights = new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            EmbeddingNorm = Norm(p + "word_embeddings_layernorm"),
            Layers = layers,
            FinalNorm = Norm(p + "ln_f"),
            LmHead = new LinearLayer(new Fp32Matrix(embedding, v, d)),
        };
        if (t.Has("lm_head.weight")) t.Take("lm_head.weight", v, d);
        t.RequireAllTaken();
        return weights;
    }
}
