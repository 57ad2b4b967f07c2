using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Hugging Face <c>OPTForCausalLM</c>: learned positions with offset 2, pre-LN (<c>do_layer_norm_before</c>)
/// or post-LN blocks, ReLU MLP, biases on every attention/MLP linear, optional project_in/project_out when
/// <c>word_embed_proj_dim</c> differs from <c>hidden_size</c>, head tied to the token embedding.
/// </summary>
public sealed class OptArchitecture : IHfArchitecture
{
    /// <inheritdoc />
    public IReadOnlyList<string> ModelTypes { get; } = ["opt"];

    /// <inheritdoc />
    public TransformerConfig ReadConfig(HfConfig c)
    {
        c.RequireAbsentOrEqual("activation_function", "relu");
        if (!c.GetBool("enable_bias", true)) throw new ModelFormatException(c.FilePath, null, "'enable_bias' is false, but only OPT with biases is supported");
        if (!c.GetBool("layer_norm_elementwise_affine", true))
            throw new ModelFormatException(c.FilePath, null, "'layer_norm_elementwise_affine' is false, but only affine layer norms are supported");
        int hidden = c.GetInt("hidden_size");
        bool preNorm = c.GetBool("do_layer_norm_before", true);
        return new TransformerConfig
        {
            Family = "opt",
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = c.GetInt("ffn_dim"),
            NumLayers = c.GetInt("num_hidden_layers"),
            NumHeads = c.GetInt("num_attention_heads"),
            NumKvHeads = c.GetInt("num_attention_heads"),
            MaxSequenceLength = c.GetInt("max_position_embeddings", 2048),
            Norm = NormKind.LayerNorm,
            NormEpsilon = 1e-5f, // OPT configs carry no epsilon: torch's LayerNorm default
            Positions = PositionKind.Learned,
            LearnedPositionOffset = 2,
            Mlp = MlpKind.Relu,
            PreNorm = preNorm,
            FinalNorm = preNorm && !c.GetBool("_remove_final_layer_norm", false),
            EmbeddingSize = c.GetInt("word_embed_proj_dim", hidden),
            BosTokenId = c.GetInt("bos_token_id", 2),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }

    /// <inheritdoc />
    public TransformerWeights ReadWeights(TransformerConfig c, HfTensorReader t)
    {
        string p = t.ResolvePrefix("embed_tokens.weight", "model.decoder.", "decoder.");
        int d = c.HiddenSize, f = c.IntermediateSize, e = c.EmbeddingWidth, v = c.VocabSize;
        LinearLayer Linear(string name, int rows, int cols) => new(t.TakeMatrix(name + ".weight", rows, cols), t.Take(name + ".bias", rows));
        NormLayer Norm(string name) => new(NormKind.LayerNorm, t.Take(name + ".weight", d), t.Take(name + ".bias", d), c.NormEpsilon);

        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string l = $"{p}layers.{i}.";
            layers[i] = new LayerWeights
            {
                AttentionNorm = Norm(l + "self_attn_layer_norm"),
                Query = Linear(l + "self_attn.q_proj", d, d),
                Key = Linear(l + "self_attn.k_proj", d, d),
                Value = Linear(l + "self_attn.v_proj", d, d),
                Output = Linear(l + "self_attn.out_proj", d, d),
                MlpNorm = Norm(l + "final_layer_norm"),
                Up = Linear(l + "fc1", f, d),
                Down = Linear(l + "fc2", d, f),
            };
        }
        float[] embedding = t.Take(p + "embed_tokens.weight", v, e);
        float[] positions = t.Take(p + "embed_positions.weight", c.MaxSequenceLength + c.LearnedPositionOffset, d);
        bool projected = e != d;
        var weights = new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            PositionEmbedding = positions,
            ProjectIn = projected ? new LinearLayer(t.TakeMatrix(p + "project_in.weight", d, e)) : null,
            ProjectOut = projected ? new LinearLayer(t.TakeMatrix(p + "project_out.weight", e, d)) : null,
            Layers = layers,
            FinalNorm = c.FinalNorm ? Norm(p + "final_layer_norm") : null,
            LmHead = new LinearLayer(new Fp32Matrix(embedding, v, e)),
        };
        if (t.Has("lm_head.weight")) t.Take("lm_head.weight", v, e); // some exports store the tied head anyway
        t.RequireAllTaken();
        return weights;
    }
}
