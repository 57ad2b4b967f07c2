using System.Runtime.InteropServices;
using System.Text;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// GGUF models whose matrices use each weight type of the table, quantized by llama.cpp's own ggml quantizer: they load
/// with exactly ggml's dequantized values, and broken or unsupported ones are refused
/// with one-line errors naming the file and the tensor.
/// </summary>
public class GgufWeightTypeLoadingTests
{
    private static readonly string[] Matrices =
    [
        "token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
        "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "output.weight",
    ];

    private TemporaryDirectory _temp = null!;
    private string _f32 = null!;       // dim 256: whole k-quant blocks in every row
    private string _narrowF32 = null!; // dim 64: rows narrower than a k-quant super-block

    [OneTimeSetUp]
    public void WriteF32Models()
    {
        _temp = new TemporaryDirectory("aq-gguf-types-");
        TransformerWeights wide = GgufModelTests.SyntheticTinyModel(seed: 21, dim: 256, ffn: 256);
        _f32 = Path.Combine(_temp.FullPath, "f32.gguf");
        GgufModelWriter.Write(_f32, wide, GgufVocabulary.Placeholder(wide.Config.VocabSize));
        TransformerWeights narrow = GgufModelTests.SyntheticTinyModel(seed: 22);
        _narrowF32 = Path.Combine(_temp.FullPath, "narrow-f32.gguf");
        GgufModelWriter.Write(_narrowF32, narrow, GgufVocabulary.Placeholder(narrow.Config.VocabSize));
    }

    [OneTimeTearDown]
    public void Delete() => _temp.Dispose();

    [TestCaseSource(typeof(GgmlTypeTraitsTests), nameof(GgmlTypeTraitsTests.ReadableTypes))]
    public void EveryReadableType_Loads_WithGgmlsDequantizedValues(GgmlType type)
    {
        string path = QuantizedWithGgml(_f32, $"all-{type}.gguf", t => Matrices.Contains(t.Name) ? type : null);
        TransformerWeights loaded = ModelLoader.Load(path, new ModelLoadOptions()).Model.Weights;
        GgufFile file = GgufFile.Read(path);
        using GgufTensorData data = GgufTensorData.Open(file);
        float[] Ggml(string name)
        {
            GgufTensorInfo tensor = file.FindTensor(name)!;
            Assert.That(tensor.Type, Is.EqualTo(type), name);
            return GgmlNative.Dequantize(type, data.Bytes(tensor, 0, (int)tensor.ByteSize), (int)tensor.ElementCount);
        }

        // every row as looked up (the stored blocks dequantized per row, or the FP32 table) bit for bit ggml's values
        Assert.That(loaded.StoredTokenEmbedding is not null, Is.EqualTo(GgmlTypeTraits.Find(type)!.LoadsPacked), $"{type}: embedding kept as the file's blocks");
        Assert.That(loaded.TokenEmbeddingAsFloats(), Is.EqualTo(Ggml("token_embd.weight")).Using<float>(BitEqual), "token_embd.weight");
        LayerWeights layer = loaded.Layers[0];
        foreach ((string name, IWeightMatrix matrix) in new (string, IWeightMatrix)[]
                 {
                     ("blk.0.attn_q.weight", layer.Query.Weight), ("blk.0.attn_k.weight", layer.Key.Weight), ("blk.0.attn_v.weight", layer.Value.Weight),
                     ("blk.0.attn_output.weight", layer.Output.Weight), ("blk.0.ffn_gate.weight", layer.Gate!.Weight),
                     ("blk.0.ffn_up.weight", layer.Up.Weight), ("blk.0.ffn_down.weight", layer.Down.Weight), ("output.weight", loaded.LmHead.Weight),
                 })
            AssertHolds(matrix, Ggml(name), GgmlTypeTraits.Find(type)!.LoadFormat!.Value, $"{type} {name}");
    }

    // The token embedding kept as the file's blocks (rows dequantized on lookup) against the whole table dequantized at
    // load as before (its values are ggml's, EveryReadableType_Loads_WithGgmlsDequantizedValues): the same logits, bit for
    // bit, with the LM head as the file stores it or tied to the embedding (no output.weight: the head multiplies by the
    // embedding's packed copy).
    [TestCase(GgmlType.Q4_0, false)]
    [TestCase(GgmlType.Q8_0, false)]
    [TestCase(GgmlType.Q6_K, false)]
    [TestCase(GgmlType.Q4_K, false)]
    [TestCase(GgmlType.Q4_0, true)]
    [TestCase(GgmlType.Q8_0, true)]
    public void StoredTokenEmbedding_GivesTheLogitsOfTheFp32Table_BitForBit(GgmlType type, bool tied)
    {
        string source = _f32;
        if (tied)
        {
            TransformerWeights untied = GgufModelTests.SyntheticTinyModel(seed: 23, dim: 256, ffn: 256);
            var tiedWeights = new TransformerWeights
            {
                Config = untied.Config, TokenEmbedding = untied.TokenEmbedding, Layers = untied.Layers, FinalNorm = untied.FinalNorm,
                LmHead = new LinearLayer(new Fp32Matrix(untied.TokenEmbedding!, untied.Config.VocabSize, untied.Config.HiddenSize)),
            };
            source = Path.Combine(_temp.FullPath, "tied-f32.gguf");
            GgufModelWriter.Write(source, tiedWeights, GgufVocabulary.Placeholder(tiedWeights.Config.VocabSize));
            Assert.That(GgufFile.Read(source).FindTensor("output.weight"), Is.Null, "the tied file stores no head");
        }
        string path = QuantizedWithGgml(source, $"{(tied ? "tied" : "all")}-embedding-{type}.gguf", t => Matrices.Contains(t.Name) ? type : null);
        TransformerModel stored = ModelLoader.Load(path, new ModelLoadOptions()).Model;
        TransformerWeights w = stored.Weights;
        Assert.That(w.StoredTokenEmbedding, Is.Not.Null, "kept as the file's blocks");
        Assert.That(w.TokenEmbedding, Is.Null, "no FP32 table beside the blocks");
        Assert.That(w.StoredTokenEmbedding!.ByteCount, Is.EqualTo(GgufFile.Read(path).FindTensor("token_embd.weight")!.ByteSize), "held at the file's size");
        var fp32Table = new TransformerWeights
        {
            Config = w.Config, TokenEmbedding = w.TokenEmbeddingAsFloats(), Layers = w.Layers, FinalNorm = w.FinalNorm, LmHead = w.LmHead,
        };
        int[] tokens = [1, 7, 258, 0, 42, 3];
        float[] expected = new TransformerModel(fp32Table, stored.Kernel, stored.Options).CreateContext().Forward(tokens, allLogits: true);
        float[] actual = stored.CreateContext().Forward(tokens, allLogits: true);
        Assert.That(actual, Is.EqualTo(expected).Using<float>(BitEqual), $"{type}{(tied ? ", tied head" : "")}");
    }

    [TestCase(GgmlType.IQ2_XXS)]
    [TestCase(GgmlType.TQ1_0)]
    [TestCase(GgmlType.IQ3_S)]
    public void UnsupportedType_IsRefused_NamingTheTensorAndType(GgmlType type)
    {
        // A valid GGUF (right shape and byte count) whose attn_v is a type the table knows but does not read.
        string path = GgufModelTests.Rewrite(_f32, $"unsupported-{type}.gguf", tensor: (t, b) =>
            t.Name == "blk.0.attn_v.weight" ? (type, new byte[GgmlTypeTraits.Find(type)!.RowBytes(t.ElementCount)]) : (t.Type, b));
        Assert.That(Refused(path), Does.Contain("blk.0.attn_v.weight").And.Contain($"found {type} (not supported)"));
    }

    [TestCase(GgmlType.Q2_K)]
    [TestCase(GgmlType.Q3_K)]
    [TestCase(GgmlType.Q4_K)]
    [TestCase(GgmlType.Q5_K)]
    [TestCase(GgmlType.Q6_K)]
    [TestCase(GgmlType.IQ4_XS)]
    public void RowWidthNotAMultipleOfTheSuperBlock_IsRefused(GgmlType type)
    {
        // The 64-wide model's attn_q relabelled as a 256-block type in the header (GgufWriter will not write such a file).
        byte[] bytes = File.ReadAllBytes(_narrowF32);
        PatchTensorType(bytes, "blk.0.attn_q.weight", type);
        string path = _temp.Write($"narrow-{type}.gguf", bytes);
        Assert.That(Refused(path), Does.Contain("blk.0.attn_q.weight").And.Contain($"expected the row length 64 to be a multiple of the {type} block size 256"));
    }

    [TestCaseSource(typeof(GgmlTypeTraitsTests), nameof(GgmlTypeTraitsTests.BlockTypes))]
    public void TruncatedBlocks_AreRefused_NamingTheTensor(GgmlType type)
    {
        // output.weight is the last tensor: the file cut half a block before its end (any alignment padding gone too).
        string path = QuantizedWithGgml(_f32, $"head-{type}.gguf", t => t.Name == "output.weight" ? type : null);
        GgufTensorInfo head = GgufFile.Read(path).FindTensor("output.weight")!;
        byte[] bytes = File.ReadAllBytes(path);
        string truncated = _temp.Write($"truncated-{type}.gguf", bytes[..(int)(head.AbsoluteOffset + head.ByteSize - GgmlTypeTraits.Find(type)!.BlockBytes / 2)]);
        Assert.That(Refused(truncated), Does.Contain("output.weight").And.Contain("truncated"));
    }

    private static IEnumerable<TestCaseData> NonFiniteScales() =>
        from type in GgmlTypeTraitsTests.BlockTypes
        from field in Enumerable.Range(0, GgmlTypeTraitsTests.HalfFieldOffsets(type).Length)
        from value in new[] { Half.NaN, Half.PositiveInfinity, Half.NegativeInfinity }
        select new TestCaseData(type, field, value).SetArgDisplayNames(type.ToString(), field == 0 ? "scale" : "min", value.ToString());

    [TestCaseSource(nameof(NonFiniteScales))]
    public void NonFiniteBlockScale_IsRefused_NamingTheTensorRowAndBlock(GgmlType type, int field, Half value)
    {
        GgmlTypeTraits traits = GgmlTypeTraits.Find(type)!;
        int rowBytes = (int)traits.RowBytes(256), lastBlock = 256 / traits.BlockElements - 1;
        string quantized = Path.Combine(_temp.FullPath, $"q-{type}.gguf");
        if (!File.Exists(quantized)) QuantizedWithGgml(_f32, Path.GetFileName(quantized), t => t.Name == "blk.0.attn_q.weight" ? type : null);
        string path = GgufModelTests.Rewrite(quantized, $"nonfinite-{type}-{field}-{BitConverter.HalfToUInt16Bits(value):X4}.gguf", tensor: (t, b) =>
        {
            if (t.Name != "blk.0.attn_q.weight") return (t.Type, b);
            byte[] copy = (byte[])b.Clone();
            MemoryMarshal.Write(copy.AsSpan(rowBytes + lastBlock * traits.BlockBytes + GgmlTypeTraitsTests.HalfFieldOffsets(type)[field]), value);
            return (t.Type, copy);
        });
        Assert.That(Refused(path), Does.Contain("blk.0.attn_q.weight").And.Contain("finite block scales").And.Contain($"row 1, block {lastBlock}"));
    }

    /// <summary>
    /// Copies the F32 GGUF <paramref name="source"/> to <paramref name="name"/> beside it, each tensor that
    /// <paramref name="typeOf"/> names a type for quantized to it by ggml's own quantizer (<c>ggml_quantize_chunk</c>).
    /// </summary>
    internal static string QuantizedWithGgml(string source, string name, Func<GgufTensorInfo, GgmlType?> typeOf) =>
        GgufModelTests.Rewrite(source, name, tensor: (t, bytes) =>
        {
            if (typeOf(t) is not GgmlType type) return (t.Type, bytes);
            Assert.That(t.Type, Is.EqualTo(GgmlType.F32), t.Name);
            return (type, GgmlNative.Quantize(type, MemoryMarshal.Cast<byte, float>(bytes), (int)(t.ElementCount / t.Shape[0]), (int)t.Shape[0]));
        });

    // How each load format must hold the file's values: every one exactly, bit for bit.
    internal static void AssertHolds(IWeightMatrix matrix, float[] expected, GgmlLoadFormat format, string what)
    {
        int rows = matrix.Rows, cols = matrix.Cols;
        Assert.That(expected, Has.Length.EqualTo(rows * cols), what);
        switch (format)
        {
            case GgmlLoadFormat.Fp32:
                Assert.That(matrix, Is.InstanceOf<Fp32Matrix>(), what);
                Assert.That(((Fp32Matrix)matrix).Data, Is.EqualTo(expected).Using<float>(BitEqual), what);
                break;
            case GgmlLoadFormat.PackedInt4:
                Assert.That(matrix, Is.InstanceOf<PackedInt4Matrix>(), what);
                var int4 = (PackedInt4Matrix)matrix;
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                        if (!BitEqual(int4.Dequantize(r, c), expected[r * cols + c]))
                            Assert.Fail($"{what}: ({r}, {c}) holds {int4.Dequantize(r, c)}, the file {expected[r * cols + c]}");
                break;
            case GgmlLoadFormat.SuperBlockInt4:
                Assert.That(matrix, Is.InstanceOf<SuperBlockInt4Matrix>(), what);
                var superBlocks = (SuperBlockInt4Matrix)matrix;
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                        if (!BitEqual(superBlocks.Dequantize(r, c), expected[r * cols + c]))
                            Assert.Fail($"{what}: ({r}, {c}) holds {superBlocks.Dequantize(r, c)}, the file {expected[r * cols + c]}");
                break;
            case GgmlLoadFormat.GroupedInt8:
                Assert.That(matrix, Is.InstanceOf<GroupedInt8Matrix>(), what);
                var grouped = (GroupedInt8Matrix)matrix;
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                        if (!BitEqual(grouped.Dequantize(r, c), expected[r * cols + c]))
                            Assert.Fail($"{what}: ({r}, {c}) holds {grouped.Dequantize(r, c)}, the file {expected[r * cols + c]}");
                break;
            default:
                Assert.Fail($"{what}: no check for {format}");
                break;
        }
    }

    private static bool BitEqual(float a, float b) => BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b);

    private static string Refused(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, new ModelLoadOptions()))!;
        Assert.That(e.Message, Does.Contain(Path.GetFileName(path)));
        Assert.That(e.Message, Does.Not.Contain('\n'), "one line");
        return e.Message;
    }

    // GGUF tensor info: u64 name length, name, u32 dimension count, u64 dimensions, u32 type, u64 offset.
    private static void PatchTensorType(byte[] file, string name, GgmlType type)
    {
        byte[] key = [.. BitConverter.GetBytes((ulong)name.Length), .. Encoding.UTF8.GetBytes(name)];
        int at = file.AsSpan().IndexOf(key);
        Assert.That(at, Is.GreaterThan(0), name);
        int dimensions = BitConverter.ToInt32(file, at + key.Length);
        BitConverter.GetBytes((uint)type).CopyTo(file, at + key.Length + 4 + 8 * dimensions);
    }
}
