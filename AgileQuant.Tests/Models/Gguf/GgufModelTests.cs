using System.Runtime.InteropServices;
using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>GGUF models: export from every loadable format, read back, the Q4_0/Q8_0 mappings, and the Hugging Face fixture's golden logits.</summary>
public class GgufModelTests
{
    private static string Stories260K => SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");

    [Test]
    public void HfFixture_ExportedAsF32_MatchesHuggingFaceLogits()
    {
        // The fixture is rotate-half (HF); the export permutes q/k to GGUF's interleaved layout and the reader runs
        // adjacent-pair RoPE: the golden logits come from HF's own modeling code.
        string dir = SharedAssets.Require("fixtures/llama_tiny_gqa");
        using var temp = new TemporaryDirectory("aq-gguf-");
        LoadedModel hf = ModelLoader.Load(dir, new ModelLoadOptions());
        string path = Path.Combine(temp.FullPath, "tiny.gguf");
        GgufModelWriter.Write(path, hf.Model.Weights, GgufVocabulary.Placeholder(hf.Model.Config.VocabSize));

        LoadedModel gguf = ModelLoader.Load(path, new ModelLoadOptions());
        Assert.That(gguf.Format, Is.EqualTo("gguf"));
        Assert.That(gguf.Model.Config.RotaryPairing, Is.EqualTo(RotaryPairing.Adjacent));
        JsonElement json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement;
        int[] ids = json.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        float[][] expected = json.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
        int vocab = gguf.Model.Config.VocabSize;
        float[] logits = gguf.Model.CreateContext().Forward(ids, allLogits: true);
        for (int p = 0; p < ids.Length; p++)
            for (int i = 0; i < vocab; i++)
                Assert.That(logits[p * vocab + i], Is.EqualTo(expected[p][i]).Within(1e-4 + 1e-4 * Math.Abs(expected[p][i])), $"position {p}, logit {i}");
    }

    [Test]
    public void Llama2cExport_F32_ReadsBackIdentically_AndRewritesByteForByte()
    {
        using var temp = new TemporaryDirectory("aq-gguf-");
        LoadedModel source = ModelLoader.Load(Stories260K, new ModelLoadOptions());
        var tokenizer = (ScoredMergeTokenizer)source.Tokenizer!;
        string first = Path.Combine(temp.FullPath, "a.gguf"), second = Path.Combine(temp.FullPath, "b.gguf");
        GgufModelWriter.Write(first, source.Model.Weights, GgufVocabulary.FromTokenizer(tokenizer, source.Model.Config.VocabSize));

        LoadedModel read = ModelLoader.Load(first, new ModelLoadOptions());
        Assert.That(read.Model.Config with { Family = "llama" }, Is.EqualTo(source.Model.Config with { Family = "llama" }));
        AssertSameWeights(read.Model.Weights, source.Model.Weights);
        var readTokenizer = (ScoredMergeTokenizer)read.Tokenizer!;
        const string text = "Once upon a time, there was a little girl named Lily.";
        Assert.That(readTokenizer.EncodeToIds(text), Is.EqualTo(tokenizer.EncodeToIds(text)));

        GgufModelWriter.Write(second, read.Model.Weights, GgufVocabulary.FromTokenizer(readTokenizer, read.Model.Config.VocabSize));
        Assert.That(File.ReadAllBytes(second), Is.EqualTo(File.ReadAllBytes(first)));
    }

    [Test]
    public void PackedWeights_RoundTripThroughQ4_0AndQ8_0_WithEveryCodeKept()
    {
        using var temp = new TemporaryDirectory("aq-gguf-");
        foreach (GgmlType type in new[] { GgmlType.Q4_0, GgmlType.Q8_0 })
        {
            TransformerWeights weights = QuantizedTinyModel(type, seed: 7);
            string path = Path.Combine(temp.FullPath, $"{type}.gguf");
            GgufModelWriter.Write(path, weights, GgufVocabulary.Placeholder(weights.Config.VocabSize), new GgufWriteOptions { WeightType = type, EmbeddingType = GgmlType.F32 });
            GgufFile file = GgufFile.Read(path);
            Assert.That(file.FindTensor("blk.0.attn_q.weight")!.Type, Is.EqualTo(type));
            Assert.That(file.FindTensor("blk.0.ffn_down.weight")!.Type, Is.EqualTo(type));
            TransformerWeights read = GgufModelReader.ReadWeights(file, GgufModelReader.ReadConfig(file));
            AssertSameWeights(read, weights);
        }
    }

    [Test]
    public void Q4_0Block_HandBuilt_LowNibblesAreWeights0To15_HighNibbles16To31()
    {
        // One row of 64 weights = two ggml blocks written byte by byte from the format description (ggml-common.h).
        using var temp = new TemporaryDirectory("aq-gguf-");
        var data = new MemoryStream();
        var expected = new float[64];
        foreach ((int block, float d) in new[] { (0, 0.5f), (1, -0.25f) })
        {
            data.Write(BitConverter.GetBytes((Half)d));
            for (int j = 0; j < 16; j++)
            {
                int low = j, high = 15 - j; // weight j ← low nibble, weight j + 16 ← high nibble
                data.WriteByte((byte)(low | high << 4));
                expected[block * 32 + j] = d * (low - 8);
                expected[block * 32 + j + 16] = d * (high - 8);
            }
        }
        string path = WriteSingleMatrixModel(temp, "attn_q", GgmlType.Q4_0, data.ToArray(), out GgufFile file);
        IWeightMatrix q = GgufModelReader.ReadWeights(file, GgufModelReader.ReadConfig(file)).Layers[0].Query.Weight;
        var packed = (PackedInt4Matrix)q;
        Assert.That(packed.IsSymmetric && packed.GroupSize == 32, Is.True, path);
        Assert.That(packed.TakesActivationGroupScales, Is.True, "Q4_0 blocks meet activations scaled per group of 32 (docs/kernels.md, \"Activation scales\")");
        Assert.That(Enumerable.Range(0, 64).Select(c => packed.Dequantize(0, c)), Is.EqualTo(expected));
    }

    [Test]
    public void Q8_0Row_WithDifferentBlockScales_KeepsEveryBlockScaleAndCode()
    {
        using var temp = new TemporaryDirectory("aq-gguf-");
        var data = new MemoryStream();
        var expected = new float[64];
        foreach ((int block, float d) in new[] { (0, 0.5f), (1, 0.25f) })
        {
            data.Write(BitConverter.GetBytes((Half)d));
            for (int i = 0; i < 32; i++)
            {
                sbyte code = (sbyte)(i * 8 - 128 + block); // −128 included: the format admits it
                data.WriteByte((byte)code);
                expected[block * 32 + i] = d * code;
            }
        }
        WriteSingleMatrixModel(temp, "attn_q", GgmlType.Q8_0, data.ToArray(), out GgufFile file);
        var grouped = (GroupedInt8Matrix)GgufModelReader.ReadWeights(file, GgufModelReader.ReadConfig(file)).Layers[0].Query.Weight;
        Assert.That((grouped.GroupSize, grouped.Scale(0, 0), grouped.Scale(0, 1), grouped.HasOffsets), Is.EqualTo((32, 0.5f, 0.25f, false)));
        for (int c = 0; c < 64; c++) Assert.That(grouped.Dequantize(0, c), Is.EqualTo(expected[c]), $"column {c}");
        Assert.That(grouped.Code(0, 32), Is.EqualTo(-127), "block 1, weight 0");
        Assert.That(grouped.Code(0, 0), Is.EqualTo(-128), "block 0, weight 0");
    }

    /// <summary>A one-layer model (dim 64, 2 heads, ffn 64, vocab 259) whose tensors are F32 except row 0 of one matrix, given as raw bytes.</summary>
    internal static string WriteSingleMatrixModel(TemporaryDirectory temp, string matrix, GgmlType type, byte[] firstRow, out GgufFile file)
    {
        TransformerWeights weights = SyntheticTinyModel(seed: 3);
        string path = Path.Combine(temp.FullPath, $"single-{type}.gguf");
        GgufModelWriter.Write(path, weights, GgufVocabulary.Placeholder(weights.Config.VocabSize));
        // blk.0.<matrix> becomes `type`: the given first row, the other rows quantized by ggml's reference quantizer.
        string rewritten = Rewrite(path, $"single-{type}-rewritten.gguf", tensor: (tensor, bytes) =>
        {
            if (tensor.Name != $"blk.0.{matrix}.weight") return (tensor.Type, bytes);
            float[] rows = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            int cols = (int)tensor.Shape[0], rowCount = (int)tensor.Shape[1], rowBytes = firstRow.Length;
            var encoded = new byte[rowBytes * rowCount];
            firstRow.CopyTo(encoded, 0);
            for (int r = 1; r < rowCount; r++)
            {
                ReadOnlySpan<float> row = rows.AsSpan(r * cols, cols);
                if (type == GgmlType.Q4_0) GgmlBlockCodec.QuantizeRowQ4_0(row, MemoryMarshal.Cast<byte, BlockQ4_0>(encoded.AsSpan(r * rowBytes, rowBytes)));
                else GgmlBlockCodec.QuantizeRowQ8_0(row, MemoryMarshal.Cast<byte, BlockQ8_0>(encoded.AsSpan(r * rowBytes, rowBytes)));
            }
            return (type, encoded);
        });
        file = GgufFile.Read(rewritten);
        return rewritten;
    }

    /// <summary>
    /// Copies the GGUF file <paramref name="source"/> to <paramref name="name"/> beside it, letting <paramref name="metadata"/>
    /// replace or drop (null) values, <paramref name="tensor"/> replace or drop (null) tensors, and <paramref name="extra"/> add more.
    /// </summary>
    internal static string Rewrite(string source, string name, Func<string, object, object?>? metadata = null,
        Func<GgufTensorInfo, byte[], (GgmlType Type, byte[] Bytes)?>? tensor = null, Action<GgufWriter>? extra = null)
    {
        GgufFile file = GgufFile.Read(source);
        var writer = new GgufWriter();
        foreach (string key in file.Keys)
            if ((metadata is null ? file.Metadata[key].Value : metadata(key, file.Metadata[key].Value)) is object value) CopyValue(writer, key, value);
        using (GgufTensorData data = GgufTensorData.Open(file))
            foreach (GgufTensorInfo info in file.Tensors)
            {
                byte[] bytes = data.Bytes(info, 0, (int)info.ByteSize).ToArray();
                if ((tensor is null ? (info.Type, bytes) : tensor(info, bytes)) is (GgmlType type, byte[] replaced))
                    writer.AddTensor(info.Name, info.Shape, type, s => s.Write(replaced));
            }
        extra?.Invoke(writer);
        string path = Path.Combine(Path.GetDirectoryName(source)!, name);
        writer.Write(path);
        return path;
    }

    internal static void CopyValue(GgufWriter writer, string key, object value)
    {
        switch (value)
        {
            case string s: writer.AddString(key, s); break;
            case uint u: writer.AddUInt32(key, u); break;
            case float f: writer.AddFloat32(key, f); break;
            case bool b: writer.AddBool(key, b); break;
            case string[] strings: writer.AddArray(key, strings); break;
            case float[] floats: writer.AddArray(key, floats); break;
            case int[] ints: writer.AddArray(key, ints); break;
            default: throw new AssertionException($"no copy for {key}: {value.GetType().Name}");
        }
    }

    /// <summary>A seeded FP32 LLaMA model: dim 64, 1 layer, 2 heads, ffn 64, vocab 259, interleaved RoPE.</summary>
    internal static TransformerWeights SyntheticTinyModel(int seed, int dim = 64, int ffn = 64, int vocab = 259, int layers = 1) =>
        BuildModel(seed, dim, ffn, vocab, layers, (random, rows, cols) => new Fp32Matrix(RandomFloats(random, rows * cols, 0.2f), rows, cols));

    /// <summary>A tiny model whose matrices are packed so that the GGUF <paramref name="type"/> holds them exactly (fp16-exact scales).</summary>
    private static TransformerWeights QuantizedTinyModel(GgmlType type, int seed) =>
        BuildModel(seed, 64, 96, 259, 2, (random, rows, cols) =>
        {
            float[] scales = Enumerable.Range(0, type == GgmlType.Q4_0 ? rows * cols / 32 : rows).Select(_ => (float)(Half)(0.001f + 0.02f * random.NextSingle())).ToArray();
            sbyte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (sbyte)(type == GgmlType.Q4_0 ? random.Next(-8, 8) : random.Next(-127, 128))).ToArray();
            return type == GgmlType.Q4_0 ? PackedInt4Matrix.FromSymmetricCodes(codes, scales, rows, cols, 32) : new Int8RowMatrix(codes, scales, rows, cols);
        });

    private static TransformerWeights BuildModel(int seed, int dim, int ffn, int vocab, int layerCount, Func<Random, int, int, IWeightMatrix> matrix)
    {
        var random = new Random(seed);
        var config = new TransformerConfig
        {
            Family = "llama", VocabSize = vocab, HiddenSize = dim, IntermediateSize = ffn, NumLayers = layerCount, NumHeads = 2, NumKvHeads = 2,
            MaxSequenceLength = 64, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
        };
        LinearLayer Linear(int rows, int cols) => new(matrix(random, rows, cols));
        NormLayer Norm() => new(NormKind.RmsNorm, RandomFloats(random, dim, 0.1f).Select(x => 1 + x).ToArray(), null, 1e-5f);
        var layers = Enumerable.Range(0, layerCount).Select(_ => new LayerWeights
        {
            AttentionNorm = Norm(), Query = Linear(dim, dim), Key = Linear(dim, dim), Value = Linear(dim, dim), Output = Linear(dim, dim),
            MlpNorm = Norm(), Gate = Linear(ffn, dim), Up = Linear(ffn, dim), Down = Linear(dim, ffn),
        }).ToArray();
        return new TransformerWeights
        {
            Config = config, TokenEmbedding = RandomFloats(random, vocab * dim, 0.2f), Layers = layers, FinalNorm = Norm(), LmHead = Linear(vocab, dim),
        };
    }

    private static float[] RandomFloats(Random random, int count, float amplitude) =>
        Enumerable.Range(0, count).Select(_ => (random.NextSingle() * 2 - 1) * amplitude).ToArray();

    internal static void AssertSameWeights(TransformerWeights actual, TransformerWeights expected)
    {
        Assert.That(actual.TokenEmbeddingAsFloats(), Is.EqualTo(expected.TokenEmbeddingAsFloats()), "token embedding");
        Assert.That(actual.FinalNorm!.Weight, Is.EqualTo(expected.FinalNorm!.Weight), "final norm");
        AssertSameMatrix(actual.LmHead.Weight, expected.LmHead.Weight, "LM head");
        for (int i = 0; i < expected.Layers.Count; i++)
        {
            LayerWeights a = actual.Layers[i], e = expected.Layers[i];
            Assert.That(a.AttentionNorm.Weight, Is.EqualTo(e.AttentionNorm.Weight), $"layer {i} attention norm");
            Assert.That(a.MlpNorm.Weight, Is.EqualTo(e.MlpNorm.Weight), $"layer {i} MLP norm");
            foreach ((string name, LinearLayer x, LinearLayer y) in new[] { ("q", a.Query, e.Query), ("k", a.Key, e.Key), ("v", a.Value, e.Value),
                         ("o", a.Output, e.Output), ("gate", a.Gate!, e.Gate!), ("up", a.Up, e.Up), ("down", a.Down, e.Down) })
                AssertSameMatrix(x.Weight, y.Weight, $"layer {i} {name}");
        }
    }

    private static void AssertSameMatrix(IWeightMatrix actual, IWeightMatrix expected, string what)
    {
        if (!(expected is Int8RowMatrix && actual is GroupedInt8Matrix)) Assert.That(actual.GetType(), Is.EqualTo(expected.GetType()), what);
        switch (expected)
        {
            case Fp32Matrix e: Assert.That(((Fp32Matrix)actual).Data, Is.EqualTo(e.Data), what); break;
            case Int8RowMatrix e when actual is GroupedInt8Matrix g:
                // Q8_0 reads back as groups of 32 (the file's block scales): every code kept, every group of a row carrying its row scale
                Assert.That((g.GroupSize, g.HasOffsets, g.HasSuperBlockScales), Is.EqualTo((32, false, false)), what + " layout");
                Assert.That(Enumerable.Range(0, g.Rows).SelectMany(r => Enumerable.Range(0, g.Cols).Select(c => g.Code(r, c))),
                    Is.EqualTo(Enumerable.Range(0, e.Rows).SelectMany(r => Enumerable.Range(0, e.Cols).Select(c => e.Code(r, c)))), what + " codes");
                Assert.That(Enumerable.Range(0, g.Rows).SelectMany(r => Enumerable.Range(0, g.GroupCount).Select(k => g.Scale(r, k))),
                    Is.EqualTo(Enumerable.Range(0, e.Rows).SelectMany(r => Enumerable.Repeat(e.Scales[r], g.GroupCount))), what + " scales");
                break;
            case Int8RowMatrix e:
                Assert.That(((Int8RowMatrix)actual).Codes.ToArray(), Is.EqualTo(e.Codes.ToArray()), what + " codes");
                Assert.That(((Int8RowMatrix)actual).Scales.ToArray(), Is.EqualTo(e.Scales.ToArray()), what + " scales");
                break;
            case PackedInt4Matrix e:
                var a = (PackedInt4Matrix)actual;
                Assert.That(a.Packed.ToArray(), Is.EqualTo(e.Packed.ToArray()), what + " nibbles");
                Assert.That(a.Scales.ToArray(), Is.EqualTo(e.Scales.ToArray()), what + " scales");
                Assert.That((a.GroupSize, a.IsSymmetric), Is.EqualTo((e.GroupSize, e.IsSymmetric)), what + " layout");
                break;
        }
    }
}
