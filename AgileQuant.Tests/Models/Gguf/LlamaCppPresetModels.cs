using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;
using LLama.Native;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// A seeded random-weight LLaMA written as F32 GGUF by our writer, and the files llama.cpp's own quantizer
/// (<c>llama_model_quantize</c> through LLamaSharp, default parameters, no importance matrix) makes of it for each preset,
/// with the per-tensor type mixes the presets choose. Quantized on first use and cached in this object's temporary folder.
/// Shape: dim 256 (every row whole k-quant super-blocks), 4 query / 2 key-value heads of 64, ffn 512, 2 layers,
/// vocab 512 (the placeholder vocabulary llama.cpp accepts), an untied output head (which the presets store as Q6_K or Q8_0).
/// </summary>
internal sealed class LlamaCppPresetModels : IDisposable
{
    /// <summary>The presets of llama-quantize that write only types this library reads, for dense models.</summary>
    public static readonly LLamaFtype[] Presets =
    [
        LLamaFtype.MOSTLY_Q4_0, LLamaFtype.MOSTLY_Q4_1, LLamaFtype.MOSTLY_Q5_0, LLamaFtype.MOSTLY_Q5_1, LLamaFtype.MOSTLY_Q8_0,
        LLamaFtype.MOSTLY_Q2_K, LLamaFtype.MOSTLY_Q3_K_M, LLamaFtype.MOSTLY_Q4_K_S, LLamaFtype.MOSTLY_Q4_K_M, LLamaFtype.MOSTLY_Q5_K_M,
        LLamaFtype.MOSTLY_Q6_K, LLamaFtype.MOSTLY_IQ4_NL, LLamaFtype.MOSTLY_IQ4_XS,
    ];

    private readonly TemporaryDirectory _temp = new("aq-llamacpp-presets-");
    private readonly Dictionary<LLamaFtype, string> _quantized = [];
    private readonly Lock _lock = new();

    public LlamaCppPresetModels(int seed)
    {
        Weights = RandomLlama(seed);
        F32Path = Path.Combine(_temp.FullPath, "random-llama-f32.gguf");
        GgufModelWriter.Write(F32Path, Weights, GgufVocabulary.Placeholder(Weights.Config.VocabSize));
    }

    /// <summary>The FP32 source weights.</summary>
    public TransformerWeights Weights { get; }

    /// <summary>The F32 GGUF file of <see cref="Weights"/>.</summary>
    public string F32Path { get; }

    /// <summary>The file llama.cpp's quantizer makes of <see cref="F32Path"/> for <paramref name="preset"/>.</summary>
    public string PathOf(LLamaFtype preset)
    {
        lock (_lock)
        {
            if (_quantized.TryGetValue(preset, out string? cached)) return cached;
            string path = Path.Combine(_temp.FullPath, $"random-llama-{preset}.gguf");
            LlamaCppSession.ConfigureLogging();
            NativeApi.llama_empty_call(); // loads libllama the way LLamaSharp chooses it, even when no session has run yet
            LLamaModelQuantizeParams parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = preset;
            parameters.nthread = 2;
            uint status = NativeApi.llama_model_quantize(F32Path, path, ref parameters);
            if (status != 0) throw new InvalidOperationException($"llama_model_quantize to {preset} returned {status}");
            _quantized[preset] = path;
            return path;
        }
    }

    public void Dispose() => _temp.Dispose();

    private static TransformerWeights RandomLlama(int seed)
    {
        const int dim = 256, heads = 4, kvHeads = 2, ffn = 512, layerCount = 2, vocab = 512;
        var random = new Random(seed);
        var config = new TransformerConfig
        {
            Family = "llama", VocabSize = vocab, HiddenSize = dim, IntermediateSize = ffn, NumLayers = layerCount, NumHeads = heads,
            NumKvHeads = kvHeads, MaxSequenceLength = 128, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
        };
        int kv = config.KvDim;
        // Uniform weights of variance 1 / fan-in keep activations O(1) through the layers; the head is twice as wide
        // so logits spread over several units.
        float[] Uniform(int count, float amplitude) => Enumerable.Range(0, count).Select(_ => (random.NextSingle() * 2 - 1) * amplitude).ToArray();
        LinearLayer Linear(int rows, int cols, float gain = 1) => new(new Fp32Matrix(Uniform(rows * cols, gain * MathF.Sqrt(3f / cols)), rows, cols));
        NormLayer Norm() => new(NormKind.RmsNorm, Uniform(dim, 0.2f).Select(x => 1 + x).ToArray(), null, config.NormEpsilon);
        var layers = Enumerable.Range(0, layerCount).Select(_ => new LayerWeights
        {
            AttentionNorm = Norm(), Query = Linear(dim, dim), Key = Linear(kv, dim), Value = Linear(kv, dim), Output = Linear(dim, dim),
            MlpNorm = Norm(), Gate = Linear(ffn, dim), Up = Linear(ffn, dim), Down = Linear(dim, ffn),
        }).ToArray();
        return new TransformerWeights
        {
            Config = config, TokenEmbedding = Uniform(vocab * dim, 1f), Layers = layers, FinalNorm = Norm(), LmHead = Linear(vocab, dim, gain: 2),
        };
    }
}
