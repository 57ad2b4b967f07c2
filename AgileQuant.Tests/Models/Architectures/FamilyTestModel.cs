using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// One model family at a small real shape (dim 256, 4 query / 2 key-value heads, 2–6 layers, vocab 512, context 128): the
/// runtime configuration written out here by hand, the Hugging Face <c>config.json</c> that states the same model (written
/// by hand too, with the keys the family's real configs carry), and seeded random FP32 weights in Hugging Face's layout
/// (rotate-half Q/K rows, Gemma's norms as <c>1 + w</c>).
/// </summary>
/// <param name="Name">Test case name.</param>
/// <param name="Config">The configuration the weights fill.</param>
/// <param name="TiedHead">Whether the head is the embedding table.</param>
/// <param name="HfConfigJson">The <c>config.json</c> of the same model.</param>
/// <param name="RunsInLlamaCpp">Whether llama.cpp computes this model as we do (false: a feature llama.cpp ignores for the family matters within the prompt).</param>
public sealed record FamilyTestModel(string Name, TransformerConfig Config, bool TiedHead, string HfConfigJson, bool RunsInLlamaCpp = true)
{
    /// <summary>The family's description.</summary>
    public ArchitectureDescription Family => ArchitectureRegistry.ForFamily(Config.Family);

    /// <summary>The test case name.</summary>
    public override string ToString() => Name;

    /// <summary>Every family's model.</summary>
    public static IReadOnlyList<FamilyTestModel> All { get; } =
    [
        // Llama 3.2: GQA, rope_theta 500000, llama3 RoPE scaling, tied embeddings
        new("llama3.2", Base("llama", MlpKind.SwiGlu, theta: 500000f) with
        {
            NormEpsilon = 1e-5f,
            RotaryFrequencyFactors = new RotaryFrequencyFactors(ExpectedLlama3Factors(headDim: 64, theta: 500000, factor: 32, low: 1, high: 4, original: 8192)),
        }, TiedHead: true, """
            {"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"max_position_embeddings":128,
             "rms_norm_eps":1e-05,"rope_theta":500000.0,"hidden_act":"silu","attention_bias":false,"mlp_bias":false,
             "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
             "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":[2,3],"torch_dtype":"float32"}
            """),
        // Mistral (Nemo-style head size), stored as llama; its window is longer than the prompt
        new("mistral", Base("llama", MlpKind.SwiGlu, theta: 1000000f) with { NormEpsilon = 1e-5f, HeadSize = 96, SlidingWindow = 4096 }, TiedHead: false, """
            {"architectures":["MistralForCausalLM"],"model_type":"mistral","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":96,"max_position_embeddings":128,
             "rms_norm_eps":1e-05,"rope_theta":1000000.0,"hidden_act":"silu","sliding_window":4096,"tie_word_embeddings":false,
             "bos_token_id":1,"eos_token_id":2,"torch_dtype":"float32"}
            """),
        // Mistral v0.1's window, short enough to matter within the prompt: llama.cpp runs 'llama' without one
        new("mistral-window16", Base("llama", MlpKind.SwiGlu, theta: 10000f) with { NormEpsilon = 1e-5f, SlidingWindow = 16 }, TiedHead: false, """
            {"architectures":["MistralForCausalLM"],"model_type":"mistral","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":128,
             "rms_norm_eps":1e-05,"rope_theta":10000.0,"hidden_act":"silu","sliding_window":16,"tie_word_embeddings":false,
             "bos_token_id":1,"eos_token_id":2}
            """, RunsInLlamaCpp: false),
        // Qwen2.5: Q/K/V biases, tied embeddings
        new("qwen2.5", Base("qwen2", MlpKind.SwiGlu, theta: 1000000f), TiedHead: true, """
            {"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":128,"rms_norm_eps":1e-06,
             "rope_theta":1000000.0,"hidden_act":"silu","use_sliding_window":false,"sliding_window":32768,"max_window_layers":21,
             "tie_word_embeddings":true,"rope_scaling":null,"bos_token_id":1,"eos_token_id":2}
            """),
        // Qwen3: per-head q/k RMSNorm, head_dim of its own, no biases
        new("qwen3", Base("qwen3", MlpKind.SwiGlu, theta: 1000000f) with { HeadSize = 96, QueryKeyNorm = true }, TiedHead: false, """
            {"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":96,"max_position_embeddings":128,
             "rms_norm_eps":1e-06,"rope_theta":1000000.0,"hidden_act":"silu","attention_bias":false,"use_sliding_window":false,
             "sliding_window":null,"rope_scaling":null,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2}
            """),
        // Phi-3 (medium-style GQA): fused qkv_proj and gate_up_proj; its window is longer than the prompt
        new("phi3", Base("phi3", MlpKind.SwiGlu, theta: 10000f) with { NormEpsilon = 1e-5f, SlidingWindow = 2047 }, TiedHead: false, """
            {"architectures":["Phi3ForCausalLM"],"model_type":"phi3","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":128,
             "original_max_position_embeddings":128,"rms_norm_eps":1e-05,"rope_theta":10000.0,"rope_scaling":null,"hidden_act":"silu",
             "sliding_window":2047,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2}
            """),
        // Gemma 2: (1 + w) norms, GeGLU, √d embeddings, post-norms, soft-caps (smaller than the real 50 / 30, so that they
        // bend these logits), sliding window 16 on layers 0 and 2
        new("gemma2", Base("gemma2", MlpKind.GeGlu, theta: 10000f) with
        {
            NumLayers = 4, HeadSize = 96, PostNorms = true, EmbeddingScale = 16f, AttentionLogitSoftcap = 5f, FinalLogitSoftcap = 10f,
            SlidingWindow = 16, SlidingWindowPattern = 2,
        }, TiedHead: true, """
            {"architectures":["Gemma2ForCausalLM"],"model_type":"gemma2","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":96,"max_position_embeddings":128,
             "rms_norm_eps":1e-06,"rope_theta":10000.0,"hidden_act":"gelu_pytorch_tanh","hidden_activation":"gelu_pytorch_tanh",
             "query_pre_attn_scalar":96,"sliding_window":16,"attn_logit_softcapping":5.0,"final_logit_softcapping":10.0,
             "attention_bias":false,"cache_implementation":"hybrid","tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}
            """),
        // Gemma 3: Gemma 2's layer plus q/k norms; five local layers (window 16, base 10000) per global one (base 1M, linear
        // RoPE scaling 8); no soft-caps
        new("gemma3", Base("gemma3", MlpKind.GeGlu, theta: 1000000f) with
        {
            NumLayers = 6, HeadSize = 96, QueryKeyNorm = true, PostNorms = true, EmbeddingScale = 16f, SlidingWindow = 16, SlidingWindowPattern = 6,
            LocalRotaryTheta = 10000f, RotaryScalingFactor = 8f,
        }, TiedHead: true, """
            {"architectures":["Gemma3ForCausalLM"],"model_type":"gemma3_text","vocab_size":512,"hidden_size":256,"intermediate_size":512,
             "num_hidden_layers":6,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":96,"max_position_embeddings":128,
             "rms_norm_eps":1e-06,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rope_scaling":{"factor":8.0,"rope_type":"linear"},
             "hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":96,"sliding_window":16,"sliding_window_pattern":6,
             "layer_types":["sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention"],
             "attn_logit_softcapping":null,"final_logit_softcapping":null,"attention_bias":false,"tie_word_embeddings":true,
             "bos_token_id":1,"eos_token_id":[2,106]}
            """),
    ];

    /// <summary>
    /// Seeded weights for <see cref="Config"/>: matrices uniform with variance 1 / fan-in (activations stay O(1)), an untied
    /// head twice that, embeddings uniform in ±1, norm weights 1 ± 0.2, biases ±0.5 where the family has them.
    /// </summary>
    public TransformerWeights RandomWeights(int seed)
    {
        TransformerConfig c = Config;
        ArchitectureDescription family = Family;
        var random = new Random(seed);
        float[] Uniform(int count, float amplitude) => Enumerable.Range(0, count).Select(_ => (random.NextSingle() * 2 - 1) * amplitude).ToArray();
        LinearLayer Linear(int rows, int cols, bool bias, float gain = 1) =>
            new(new Fp32Matrix(Uniform(rows * cols, gain * MathF.Sqrt(3f / cols)), rows, cols), bias ? Uniform(rows, 0.5f) : null);
        NormLayer Norm(int width) => new(c.Norm, Uniform(width, 0.2f).Select(x => 1 + x).ToArray(), null, c.NormEpsilon);
        LayerWeights Layer() => LayerWeights.FromParts(role => role.IsRequiredBy(c) ? Norm(role.NormWidth(c)) : null, role =>
        {
            if (!role.IsRequiredBy(c)) return null;
            (int rows, int cols) = role.Shape(c);
            return Linear(rows, cols, family.Bias(role) == BiasRule.Always);
        });
        float[] embedding = Uniform(c.VocabSize * c.HiddenSize, 1f);
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            Layers = Enumerable.Range(0, c.NumLayers).Select(_ => Layer()).ToArray(),
            FinalNorm = Norm(c.HiddenSize),
            LmHead = TiedHead ? new LinearLayer(new Fp32Matrix(embedding, c.VocabSize, c.HiddenSize)) : Linear(c.VocabSize, c.HiddenSize, bias: false, gain: 2),
        };
    }

    private static TransformerConfig Base(string family, MlpKind mlp, float theta) => new()
    {
        Family = family, VocabSize = 512, HiddenSize = 256, IntermediateSize = 512, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
        MaxSequenceLength = 128, Norm = NormKind.RmsNorm, NormEpsilon = 1e-6f, Positions = PositionKind.Rotary,
        RotaryPairing = RotaryPairing.RotateHalf, RotaryTheta = theta, Mlp = mlp, BosTokenId = 1, EosTokenId = 2,
    };

    /// <summary>
    /// Llama 3.1's frequency factors as Hugging Face's <c>_compute_llama3_parameters</c> (transformers, modeling_rope_utils.py)
    /// scales inv_freq, transcribed here in double precision: the divisor that turns inv_freq into the scaled one.
    /// </summary>
    internal static float[] ExpectedLlama3Factors(int headDim, double theta, double factor, double low, double high, double original)
    {
        var factors = new float[headDim / 2];
        for (int i = 0; i < factors.Length; i++)
        {
            double invFreq = 1 / Math.Pow(theta, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / invFreq;
            double invFreqLlama = wavelen > original / low ? invFreq / factor : invFreq;
            double smooth = (original / wavelen - low) / (high - low);
            double smoothed = (1 - smooth) * invFreqLlama / factor + smooth * invFreqLlama;
            bool medium = !(wavelen < original / high) && !(wavelen > original / low);
            factors[i] = (float)(invFreq / (medium ? smoothed : invFreqLlama));
        }
        return factors;
    }
}
