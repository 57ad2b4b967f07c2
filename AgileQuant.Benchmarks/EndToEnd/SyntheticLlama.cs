using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>LLaMA-architecture models with seeded random weights, at real shapes (speed depends on shapes, not values).</summary>
public static class SyntheticLlama
{
    /// <summary>stories110M: dim 768, 12 layers, 12 heads, hidden 2048, vocab 32000, context 1024.</summary>
    public static TransformerConfig Stories110M { get; } = Config(dim: 768, layers: 12, heads: 12, kvHeads: 12, hidden: 2048, vocab: 32000, context: 1024);

    /// <summary>A LLaMA config with the given sizes.</summary>
    public static TransformerConfig Config(int dim, int layers, int heads, int kvHeads, int hidden, int vocab, int context) => new()
    {
        Family = "llama",
        VocabSize = vocab,
        HiddenSize = dim,
        IntermediateSize = hidden,
        NumLayers = layers,
        NumHeads = heads,
        NumKvHeads = kvHeads,
        MaxSequenceLength = context,
        Norm = NormKind.RmsNorm,
        NormEpsilon = 1e-5f,
        Positions = PositionKind.Rotary,
        RotaryPairing = RotaryPairing.Adjacent,
        Mlp = MlpKind.SwiGlu,
    };

    /// <summary>Weights ~ U(−a, a) with a = 1/√(fan-in), norms = 1, from <paramref name="seed"/>.</summary>
    public static TransformerWeights Create(TransformerConfig c, int seed = 110)
    {
        var random = new Random(seed);
        int d = c.HiddenSize, f = c.IntermediateSize, kv = c.KvDim;
        float[] Uniform(long count, int fanIn)
        {
            float a = 1f / MathF.Sqrt(fanIn);
            var data = new float[count];
            for (long i = 0; i < count; i++) data[i] = (float)(random.NextDouble() * 2 - 1) * a;
            return data;
        }
        LinearLayer Linear(int rows, int cols) => new(new Fp32Matrix(Uniform((long)rows * cols, cols), rows, cols));
        NormLayer Norm() => new(NormKind.RmsNorm, Enumerable.Repeat(1f, d).ToArray(), null, c.NormEpsilon);
        var layers = new LayerWeights[c.NumLayers];
        for (int l = 0; l < layers.Length; l++)
            layers[l] = new LayerWeights
            {
                AttentionNorm = Norm(),
                Query = Linear(d, d),
                Key = Linear(kv, d),
                Value = Linear(kv, d),
                Output = Linear(d, d),
                MlpNorm = Norm(),
                Gate = Linear(f, d),
                Up = Linear(f, d),
                Down = Linear(d, f),
            };
        float[] embedding = Uniform((long)c.VocabSize * d, d);
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            Layers = layers,
            FinalNorm = Norm(),
            LmHead = new LinearLayer(new Fp32Matrix(embedding, c.VocabSize, d)),
        };
    }
}
