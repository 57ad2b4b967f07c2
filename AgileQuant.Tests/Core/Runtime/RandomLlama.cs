using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>Seeded random FP32 LLaMA-shaped weights of any head layout, for runtime tests that need a model of a given shape.</summary>
internal static class RandomLlama
{
    /// <summary>
    /// <paramref name="layers"/> layers of <paramref name="heads"/> query heads, <paramref name="kvHeads"/> key/value heads of
    /// <paramref name="headDim"/>, vocab 64, SwiGLU of twice the width; rotary positions unless <paramref name="positions"/> says otherwise;
    /// a sliding window of <paramref name="slidingWindow"/> positions in every layer (0: none).
    /// </summary>
    public static TransformerWeights Create(int heads, int kvHeads, int headDim, int layers = 1, int context = 512, PositionKind positions = PositionKind.Rotary,
        int slidingWindow = 0, int seed = 5)
    {
        var random = new Random(seed);
        int dim = heads * headDim, kv = kvHeads * headDim, ffn = 2 * dim, vocab = 64;
        var config = new TransformerConfig
        {
            Family = "llama", VocabSize = vocab, HiddenSize = dim, IntermediateSize = ffn, NumLayers = layers, NumHeads = heads, NumKvHeads = kvHeads,
            MaxSequenceLength = context, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = positions,
            RotaryPairing = RotaryPairing.RotateHalf, Mlp = MlpKind.SwiGlu, SlidingWindow = slidingWindow,
        };
        float[] Floats(int n, float amplitude) => Enumerable.Range(0, n).Select(_ => (random.NextSingle() * 2 - 1) * amplitude).ToArray();
        LinearLayer Linear(int rows, int cols) => new(new Fp32Matrix(Floats(rows * cols, 1.5f / MathF.Sqrt(cols)), rows, cols));
        NormLayer Norm() => new(NormKind.RmsNorm, Floats(dim, 0.1f).Select(x => 1 + x).ToArray(), null, 1e-5f);
        LayerWeights[] blocks = Enumerable.Range(0, layers).Select(_ => new LayerWeights
        {
            AttentionNorm = Norm(), Query = Linear(dim, dim), Key = Linear(kv, dim), Value = Linear(kv, dim), Output = Linear(dim, dim),
            MlpNorm = Norm(), Gate = Linear(ffn, dim), Up = Linear(ffn, dim), Down = Linear(dim, ffn),
        }).ToArray();
        return new TransformerWeights { Config = config, TokenEmbedding = Floats(vocab * dim, 1f), Layers = blocks, FinalNorm = Norm(), LmHead = Linear(vocab, dim) };
    }
}
