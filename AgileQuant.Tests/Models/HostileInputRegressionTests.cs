using System.Text;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Fuzz;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models;

/// <summary>Regression tests for the reader bugs the fuzzers found, and for the loading budget and weight checks.</summary>
[TestFixture]
public sealed class HostileInputRegressionTests() : TemporaryDirectoryFixture("aq-hostile-")
{
    [Test]
    public void Llama2cHeaderWhoseSizeWrapsAround64BitsIsRefusedAtTheHeader()
    {
        // dim 2^15, layers 2^30...: the exact size is ~2^65 bytes, but in wrapping 64-bit arithmetic it equalled this file's.
        byte[] seed = Llama2cFuzzTests.CheckpointSeeds()[0];
        byte[] file = Llama2cCheckpointMutator.WrappingHeader(seed, new Random(1));
        string path = Temp.Write("wrap.bin", file);
        var e = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain("describes a 3689348814741936").And.Contain($"the file has {file.Length} bytes"));
        Assert.That(e.TensorName, Is.Null, "refused at the header, not part-way through reading tensors");
    }

    [TestCase("{\"model_type\":\"ll\\ud800ama\",\"hidden_size\":8}")]
    [TestCase("{\"model_type\":\"llama\",\"\\udfffhidden_size\":8}")]
    public void ConfigWithLoneSurrogateIsRefusedWithModelFormatException(string json)
    {
        string path = Temp.Write("config.json", Encoding.UTF8.GetBytes(json));
        var e = Assert.Throws<ModelFormatException>(() => HfConfig.Load(path))!;
        Assert.That(e.Message, Does.Contain("valid UTF-8 text"));
    }

    [Test]
    public void ConfigWithInvalidUtf8IsRefusedWithModelFormatException()
    {
        byte[] json = [.. "{\"model_type\":\"lla"u8, 0xC3, 0x28, .. "ma\"}"u8];
        string path = Temp.Write("config.json", json);
        Assert.Throws<ModelFormatException>(() => HfConfig.Load(path));
    }

    [Test]
    public void AbsurdHiddenSizeIsRefusedByTheBudgetBeforeAnyTensorIsRead()
    {
        Temp.Write(SafeTensorsCheckpoint.SingleFileName, HuggingFaceFuzzTests.LlamaWeights());
        Temp.Write("config.json", Encoding.UTF8.GetBytes(HuggingFaceFuzzTests.LlamaConfig
            .Replace("\"hidden_size\":8", "\"hidden_size\":1073741824").Replace("\"intermediate_size\":12", "\"intermediate_size\":1073741824")));
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(Temp.FullPath, new ModelLoadOptions()))!;
        Assert.That(e.Message, Does.Contain("loading budget").And.Contain("config.json"));
    }

    [Test]
    public void MaxWeightBytesIsEnforcedForBothFormats()
    {
        Temp.Write(SafeTensorsCheckpoint.SingleFileName, HuggingFaceFuzzTests.LlamaWeights());
        Temp.Write("config.json", Encoding.UTF8.GetBytes(HuggingFaceFuzzTests.LlamaConfig));
        // 4·(V·d + L·(2·d² + 2·kv·d + 3·f·d)) = 4·(16·8 + 2·(2·64 + 2·4·8 + 3·12·8)) = 4·1088 = 4352 bytes implied.
        var options = new ModelLoadOptions { MaxWeightBytes = 4351 };
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(Temp.FullPath, options))!;
        Assert.That(e.Message, Does.Contain("at least 4352 bytes").And.Contain("budget of 4351"));
        Assert.That(ModelLoader.Load(Temp.FullPath, options with { MaxWeightBytes = 4352 }).Model.Config.HiddenSize, Is.EqualTo(8));

        string bin = Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0]);
        Assert.Throws<ModelFormatException>(() => ModelLoader.Load(bin, options with { MaxWeightBytes = 100 }));
        Assert.That(ModelLoader.Load(bin, options with { MaxWeightBytes = null }).Format, Is.EqualTo("llama2c"));
    }

    [TestCase(float.NaN)]
    [TestCase(float.PositiveInfinity)]
    [TestCase(float.NegativeInfinity)]
    public void NonFiniteWeightIsRefusedAtLoadUnlessTheCheckIsOff(float bad)
    {
        byte[] file = Llama2cFuzzTests.CheckpointSeeds()[0];
        int at = 28 + 4 * 37; // token embedding, element 37
        BitConverter.TryWriteBytes(file.AsSpan(at), bad);
        string path = Temp.Write("model.bin", file);
        var options = new ModelLoadOptions();
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, options))!;
        Assert.That(e.Message, Does.Contain("expected finite weights").And.Contain(bad.ToString()));
        Assert.That(e.TensorName, Is.Not.Null);
        Assert.DoesNotThrow(() => ModelLoader.Load(path, options with { CheckFiniteWeights = false }));
    }

    [Test]
    public void HealthCheckNamesTheTensorAndIndex()
    {
        TransformerWeights weights = Llama2cCheckpoint.Load(Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0]));
        Assert.That(WeightsHealthCheck.FindFirstNonFinite(weights), Is.Null);
        var down = (AgileQuant.Intrinsics.Formats.Fp32Matrix)weights.Layers[1].Down.Weight;
        down.Data[37] = float.NaN;
        NonFiniteWeight? found = WeightsHealthCheck.FindFirstNonFinite(weights);
        Assert.That(found, Is.Not.Null);
        Assert.That(found!.Tensor, Is.EqualTo("layer 1 down weight"));
        Assert.That(found.Index, Is.EqualTo(37));
        Assert.That(float.IsNaN(found.Value));
    }

    [Test]
    public void ContextWhoseKvCacheExceedsTheLargestArrayIsRefusedCleanly()
    {
        TransformerWeights weights = Llama2cCheckpoint.Load(Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0]));
        var huge = new TransformerWeights
        {
            Config = weights.Config with { MaxSequenceLength = int.MaxValue },
            TokenEmbedding = weights.TokenEmbedding,
            StoredTokenEmbedding = weights.StoredTokenEmbedding,
            Layers = weights.Layers,
            FinalNorm = weights.FinalNorm,
            LmHead = weights.LmHead,
        };
        var model = new TransformerModel(huge, TestKernels.Default);
        var e = Assert.Throws<AgileQuantException>(() => model.CreateContext())!;
        Assert.That(e.Message, Does.Contain("KV cache").And.Contain("context length is too large"));
    }
}
