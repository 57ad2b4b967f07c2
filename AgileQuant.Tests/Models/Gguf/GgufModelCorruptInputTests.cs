using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>Broken GGUF models are refused with a <see cref="ModelFormatException"/> naming the file, the tensor and what was expected.</summary>
public class GgufModelCorruptInputTests
{
    private TemporaryDirectory _temp = null!;
    private string _good = null!;

    [SetUp]
    public void WriteGoodModel()
    {
        _temp = new TemporaryDirectory("aq-gguf-corrupt-");
        TransformerWeights weights = GgufModelTests.SyntheticTinyModel(seed: 11);
        _good = Path.Combine(_temp.FullPath, "good.gguf");
        GgufModelWriter.Write(_good, weights, GgufVocabulary.Placeholder(weights.Config.VocabSize), new GgufWriteOptions { WeightType = GgmlType.Q4_0 });
    }

    [TearDown]
    public void Delete() => _temp.Dispose();

    private static ModelFormatException Refused(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, new ModelLoadOptions()))!;
        Assert.That(e.Message, Does.Contain(Path.GetFileName(path)));
        return e;
    }

    [Test]
    public void GoodModel_Loads() => Assert.That(ModelLoader.Load(_good, new ModelLoadOptions()).Model.Config.NumLayers, Is.EqualTo(1));

    [TestCase(2147483647u)]
    [TestCase(1_000_000_000u)]
    [TestCase(2u)]
    public void BlockCountBeyondTheTensors_IsRefusedBeforeSizingAnything(uint blocks)
    {
        // Used to size the layer array first: 2^31-1 failed with "Array dimensions exceeded supported range", 1e9 ran out of memory.
        string path = GgufModelTests.Rewrite(_good, "blocks.gguf", metadata: (k, v) => k == "llama.block_count" ? blocks : v);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        ModelFormatException e = Refused(path);
        Assert.That(e.Message, Does.Contain("metadata 'llama.block_count'").And.Contain($"{blocks} layers").And.Contain($"no tensor of layer {blocks - 1}"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - allocated, Is.LessThan(64L << 20), "refused before anything is sized by the count");
    }

    [TestCase(1e30f, "expected a finite RoPE base in (0, 1e12]")]
    [TestCase(float.PositiveInfinity, "expected a positive finite number")]
    [TestCase(0f, "expected a positive finite number")]
    public void RopeBaseOutOfRange_IsRefused(float theta, string message)
    {
        string path = GgufModelTests.Rewrite(_good, "theta.gguf", metadata: (k, v) => k == "llama.rope.freq_base" ? theta : v);
        Assert.That(Refused(path).Message, Does.Contain("llama.rope.freq_base").And.Contain(message));
    }

    [Test]
    public void ContextLengthAboveTheCap_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "context.gguf", metadata: (k, v) => k == "llama.context_length" ? (uint)(1 << 28) : v);
        Assert.That(Refused(path).Message, Does.Contain("llama.context_length").And.Contain("expected a context length of at most 16777216 tokens, found 268435456"));
    }

    [Test]
    public void Truncated_IsRefused_NamingTheTensorThatRunsPastTheEnd()
    {
        byte[] bytes = File.ReadAllBytes(_good);
        string path = _temp.Write("truncated.gguf", bytes[..^40]);
        Assert.That(Refused(path).Message, Does.Contain("output.weight").And.Contain("truncated"));
    }

    [Test]
    public void UnsupportedTensorType_IsRefused()
    {
        // MXFP4 blocks (32 weights, 17 bytes) where attn_v should be: a valid GGUF, but not a type we read.
        // (Q4_1, which this test used before, is read since the weight-type table gained its dequantizer.)
        string path = GgufModelTests.Rewrite(_good, "mxfp4.gguf", tensor: (t, b) =>
            t.Name == "blk.0.attn_v.weight" ? (GgmlType.MXFP4, new byte[t.ElementCount / 32 * 17]) : (t.Type, b));
        Assert.That(Refused(path).Message, Does.Contain("blk.0.attn_v.weight").And.Contain("found MXFP4"));
    }

    [Test]
    public void ShapeDisagreeingWithMetadata_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "ffn.gguf", metadata: (k, v) => k == "llama.feed_forward_length" ? 96u : v);
        Assert.That(Refused(path).Message, Does.Contain("blk.0.ffn_gate.weight").And.Contain("expected ggml shape [64, 96]").And.Contain("found [64, 64]"));
    }

    [Test]
    public void MissingTensor_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "missing.gguf", tensor: (t, b) => t.Name == "blk.0.ffn_norm.weight" ? null : (t.Type, b));
        Assert.That(Refused(path).Message, Does.Contain("blk.0.ffn_norm.weight").And.Contain("missing"));
    }

    [Test]
    public void UnexpectedTensor_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "extra.gguf", extra: w => w.AddTensor("blk.1.attn_norm.weight", [64], GgmlType.F32, s => s.Write(new byte[256])));
        Assert.That(Refused(path).Message, Does.Contain("blk.1.attn_norm.weight").And.Contain("unexpected tensor"));
    }

    [Test]
    public void NonFiniteBlockScale_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "nan.gguf", tensor: (t, b) =>
        {
            if (t.Name != "blk.0.ffn_up.weight") return (t.Type, b);
            byte[] copy = (byte[])b.Clone();
            BitConverter.GetBytes(Half.NaN).CopyTo(copy, 3 * BlockQ4_0.Bytes); // 64 columns = 2 blocks a row: row 1, block 1
            return (t.Type, copy);
        });
        Assert.That(Refused(path).Message, Does.Contain("blk.0.ffn_up.weight").And.Contain("finite block scales").And.Contain("row 1, block 1"));
    }

    [Test]
    public void OtherArchitecture_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "falcon.gguf", metadata: (k, v) => k == "general.architecture" ? "falcon" : v);
        Assert.That(Refused(path).Message, Does.Contain("general.architecture 'llama'").And.Contain("found 'falcon'"));
    }

    [Test]
    public void RopeScaling_IsRefused()
    {
        string path = GgufModelTests.Rewrite(_good, "yarn.gguf", extra: w => w.AddString("llama.rope.scaling.type", "yarn"));
        Assert.That(Refused(path).Message, Does.Contain("rope.scaling.type 'yarn'"));
    }

    [Test]
    public void AbsurdSizes_AreRefusedByTheBudget_BeforeAnyTensorIsRead()
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(_good, new ModelLoadOptions { MaxWeightBytes = 1000 }))!;
        Assert.That(e.Message, Does.Contain("loading budget of 1000 bytes"));
    }

    [TestCase("llama-spm")]
    [TestCase("gpt-2")]
    [TestCase("gpt-neox")]
    public void GgmlVocabularyFiles_ReadAndBuildTokenizers_ButAreNoModels(string name)
    {
        string path = SharedAssets.Require($"assets/tokenizers/ggml-vocab/ggml-vocab-{name}.gguf");
        GgufFile file = GgufFile.Read(path);
        Assert.That(file.Tensors, Is.Empty);
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = AgileQuant.Models.Tokenizers.GgufTokenizerLoader.Create(file);
        Assert.That(tokenizer.Decode(tokenizer.EncodeToIds("Hello world")), Does.Contain("Hello world"));
        Refused(path);
    }
}
