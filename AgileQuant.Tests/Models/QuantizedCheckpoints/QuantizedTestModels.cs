using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Models.QuantizedCheckpoints;

/// <summary>Small quantized models for checkpoint tests: seeded random codes, or stories260K through RTN.</summary>
internal static class QuantizedTestModels
{
    /// <summary>
    /// A 2-layer LLaMA-shaped model (hidden 64, intermediate 172, 4 heads, 2 KV heads, vocab 40) whose linears mix
    /// per-row int8, symmetric and asymmetric int4 (g32 with a short last group of 12 on down_proj, g64, g128) and
    /// one FP32 layer, with one bias and mixed activation bits; the LM head is tied to the embedding or per-row int8.
    /// </summary>
    public static TransformerWeights Tiny(bool tiedHead, int seed = 1234)
    {
        var random = new Random(seed);
        var c = new TransformerConfig
        {
            Family = "llama", VocabSize = 40, HiddenSize = 64, IntermediateSize = 172, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
            MaxSequenceLength = 16, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
        };
        float[] Floats(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        float[] Scales(int n, float typical) => Enumerable.Range(0, n).Select(_ => typical * (0.5f + (float)random.NextDouble())).ToArray();
        NormLayer Norm() => new(NormKind.RmsNorm, Enumerable.Range(0, 64).Select(_ => 0.8f + 0.4f * (float)random.NextDouble()).ToArray(), null, 1e-5f);
        IWeightMatrix Int8(int rows, int cols) =>
            new Int8RowMatrix(Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-127, 128)).ToArray(), Scales(rows, 0.002f), rows, cols);
        IWeightMatrix Int4(int rows, int cols, int group, bool symmetric)
        {
            int scaleCount = rows * ((cols + group - 1) / group);
            return symmetric
                ? PackedInt4Matrix.FromSymmetricCodes(Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-8, 8)).ToArray(), Scales(scaleCount, 0.03f), rows, cols, group)
                : PackedInt4Matrix.FromAsymmetricCodes(Enumerable.Range(0, rows * cols).Select(_ => (byte)random.Next(0, 16)).ToArray(), Scales(scaleCount, 0.03f),
                    Enumerable.Range(0, scaleCount).Select(_ => (byte)random.Next(0, 16)).ToArray(), rows, cols, group);
        }
        LinearLayer L(IWeightMatrix w, float[]? bias = null, int bits = 8, int lowBits = 0) => new(w, bias) { ActivationBits = bits, LowBitActivationBits = lowBits };

        float[] embedding = Floats(40 * 64, 1f);
        var layer0 = new LayerWeights
        {
            AttentionNorm = Norm(),
            Query = L(Int8(64, 64)),
            Key = L(Int4(32, 64, 32, symmetric: true)),
            Value = L(Int4(32, 64, 64, symmetric: false)),
            Output = L(Int4(64, 64, 32, symmetric: false), bias: Floats(64, 0.1f), lowBits: 4),
            MlpNorm = Norm(),
            Gate = L(Int4(172, 64, 32, symmetric: false), lowBits: 4),
            Up = L(Int8(172, 64), lowBits: 4),
            Down = L(Int4(64, 172, 32, symmetric: false), lowBits: 4),
        };
        var layer1 = new LayerWeights
        {
            AttentionNorm = Norm(),
            Query = L(new Fp32Matrix(Floats(64 * 64, 0.1f), 64, 64)),
            Key = L(Int8(32, 64)),
            Value = L(Int4(32, 64, 128, symmetric: true)),
            Output = L(Int8(64, 64), bits: 4),
            MlpNorm = Norm(),
            Gate = L(Int4(172, 64, 32, symmetric: true), bits: 4),
            Up = L(Int4(172, 64, 32, symmetric: false), bits: 4),
            Down = L(Int4(64, 172, 32, symmetric: true), bits: 4),
        };
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            Layers = [layer0, layer1],
            FinalNorm = Norm(),
            LmHead = tiedHead ? new LinearLayer(new Fp32Matrix(embedding, 40, 64)) : L(Int8(40, 64)),
        };
    }

    /// <summary>
    /// A 1-layer OPT/BLOOM-shaped model exercising every optional piece: LayerNorms with biases, learned positions
    /// (offset 2), an embedding LayerNorm, a 32-wide embedding with int8 project_in / int4 project_out, a ReLU MLP
    /// without gate, biases on every linear, and an LM head tied to the embedding.
    /// </summary>
    public static TransformerWeights TinyOptShaped(int seed = 99)
    {
        var random = new Random(seed);
        var c = new TransformerConfig
        {
            Family = "opt", VocabSize = 50, HiddenSize = 64, IntermediateSize = 172, NumLayers = 1, NumHeads = 4, NumKvHeads = 4,
            MaxSequenceLength = 16, Norm = NormKind.LayerNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Learned,
            LearnedPositionOffset = 2, Mlp = MlpKind.Relu, EmbeddingNorm = true, EmbeddingSize = 32, BosTokenId = 2, EosTokenId = 2,
        };
        float[] Floats(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        NormLayer Norm() => new(NormKind.LayerNorm, Floats(64, 0.2f).Select(x => x + 1f).ToArray(), Floats(64, 0.1f), 1e-5f);
        LinearLayer Int8(int rows, int cols) => new(new Int8RowMatrix(
            Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-127, 128)).ToArray(), Floats(rows, 0.001f).Select(x => x + 0.002f).ToArray(), rows, cols), Floats(rows, 0.1f));
        LinearLayer Int4(int rows, int cols) => new(PackedInt4Matrix.FromAsymmetricCodes(
            Enumerable.Range(0, rows * cols).Select(_ => (byte)random.Next(0, 16)).ToArray(), Floats(rows * ((cols + 31) / 32), 0.01f).Select(x => x + 0.03f).ToArray(),
            Enumerable.Range(0, rows * ((cols + 31) / 32)).Select(_ => (byte)random.Next(0, 16)).ToArray(), rows, cols, 32), Floats(rows, 0.1f));
        float[] embedding = Floats(50 * 32, 1f);
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            PositionEmbedding = Floats(18 * 64, 0.5f),
            EmbeddingNorm = Norm(),
            ProjectIn = Int8(64, 32),
            Layers =
            [
                new LayerWeights
                {
                    AttentionNorm = Norm(), Query = Int4(64, 64), Key = Int8(64, 64), Value = Int4(64, 64), Output = Int8(64, 64),
                    MlpNorm = Norm(), Up = Int4(172, 64), Down = Int4(64, 172),
                },
            ],
            FinalNorm = Norm(),
            ProjectOut = Int4(32, 64),
            LmHead = new LinearLayer(new Fp32Matrix(embedding, 50, 32)),
        };
    }

    /// <summary>
    /// <paramref name="fp32"/> with every decoder linear rounded to nearest by <see cref="RoundToNearestQuantizer"/>:
    /// per-row symmetric int8 when <paramref name="bits"/> is 8, else int4 in groups of 32 (symmetric or not).
    /// Embeddings, norms and the (tied) LM head stay FP32.
    /// </summary>
    public static TransformerWeights RoundToNearest(TransformerWeights fp32, int bits, bool symmetric)
    {
        var settings = new QuantizerSettings { Bits = bits, Symmetric = bits == 8 || symmetric, GroupSize = bits == 8 ? 0 : 32 };
        LinearLayer Quantize(LinearLayer linear)
        {
            var w = (Fp32Matrix)linear.Weight;
            QuantizedMatrix q = RoundToNearestQuantizer.Quantize(w.Data, w.Rows, w.Cols, settings);
            IWeightMatrix packed = bits == 8 ? new Int8RowMatrix(q.SignedCodes, q.Scales, w.Rows, w.Cols)
                : settings.Symmetric ? PackedInt4Matrix.FromSymmetricCodes(q.SignedCodes, q.Scales, w.Rows, w.Cols, 32)
                : PackedInt4Matrix.FromAsymmetricCodes(q.Codes, q.Scales, q.ZeroPoints, w.Rows, w.Cols, 32);
            return new LinearLayer(packed, linear.Bias);
        }
        return new TransformerWeights
        {
            Config = fp32.Config,
            TokenEmbedding = fp32.TokenEmbedding,
            PositionEmbedding = fp32.PositionEmbedding,
            EmbeddingNorm = fp32.EmbeddingNorm,
            Layers = fp32.Layers.Select(l => new LayerWeights
            {
                AttentionNorm = l.AttentionNorm, MlpNorm = l.MlpNorm,
                Query = Quantize(l.Query), Key = Quantize(l.Key), Value = Quantize(l.Value), Output = Quantize(l.Output),
                Gate = l.Gate is null ? null : Quantize(l.Gate), Up = Quantize(l.Up), Down = Quantize(l.Down),
            }).ToArray(),
            FinalNorm = fp32.FinalNorm,
            LmHead = fp32.LmHead,
        };
    }

    /// <summary>Bytes the kernels stream (every matrix's ByteCount, a tied head once) plus the FP32 embeddings, norms and biases.</summary>
    public static long PackedPayloadBytes(TransformerWeights w)
    {
        long bytes = w.TokenEmbeddingBytes + (w.PositionEmbedding?.Length ?? 0) * sizeof(float);
        foreach (LinearLayer linear in Linears(w))
        {
            bool tied = linear.Weight is Fp32Matrix f && ReferenceEquals(f.Data, w.TokenEmbedding);
            bytes += (tied ? 0 : linear.Weight.ByteCount) + (linear.Bias?.Length ?? 0) * sizeof(float);
        }
        foreach (NormLayer norm in Norms(w)) bytes += (norm.Weight.Length + (norm.Bias?.Length ?? 0)) * sizeof(float);
        return bytes;
    }

    /// <summary>Every linear of <paramref name="w"/>, in a fixed order.</summary>
    public static IEnumerable<LinearLayer> Linears(TransformerWeights w)
    {
        if (w.ProjectIn is not null) yield return w.ProjectIn;
        foreach (LayerWeights l in w.Layers)
            foreach (LinearLayer? linear in new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down })
                if (linear is not null) yield return linear;
        if (w.ProjectOut is not null) yield return w.ProjectOut;
        yield return w.LmHead;
    }

    /// <summary>Every norm of <paramref name="w"/>, in a fixed order.</summary>
    public static IEnumerable<NormLayer> Norms(TransformerWeights w)
    {
        if (w.EmbeddingNorm is not null) yield return w.EmbeddingNorm;
        foreach (LayerWeights l in w.Layers)
        {
            yield return l.AttentionNorm;
            yield return l.MlpNorm;
        }
        if (w.FinalNorm is not null) yield return w.FinalNorm;
    }
}
