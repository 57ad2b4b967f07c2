using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.QuantizedCheckpoints;

/// <summary>Save, reload: identical tensors, bit-identical logits, and a file the size of the packed payload.</summary>
[TestFixture]
public class QuantizedCheckpointRoundTripTests
{
    private static readonly IMatMulKernel Kernel = KernelSelector.Create();
    private static readonly int[] Prompt = [1, 5, 7, 3, 9, 11, 2, 30];

    [TestCase(true)]
    [TestCase(false)]
    public void TinyMixedFormatModelRoundTrips(bool tiedHead)
    {
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "tiny.safetensors");
        TransformerWeights original = QuantizedTestModels.Tiny(tiedHead);
        var extra = new Dictionary<string, string> { ["agilequant.calibration"] = "none (random codes)" };
        QuantizedCheckpointWriter.Write(path, original, "w4a8-mixed", extra);

        QuantizedCheckpoint loaded = QuantizedCheckpointReader.Load(path);

        Assert.That(loaded.ConfigName, Is.EqualTo("W4A8-MIXED"));
        Assert.That(loaded.Metadata["agilequant.calibration"], Is.EqualTo("none (random codes)"));
        Assert.That(loaded.Metadata["agilequant.format"], Is.EqualTo("1"));
        AssertIdentical(original, loaded.Weights);
        Assert.That(loaded.Weights.LmHead.Weight is Fp32Matrix head && ReferenceEquals(head.Data, loaded.Weights.TokenEmbedding),
            tiedHead ? Is.True : Is.False, "a tied head shares the embedding array after loading");
        AssertSameLogits(original, loaded.Weights, loaded.ConfigName);
        AssertSizeNearPayload(path, original, withinFivePercent: false); // 2 tiny layers: the header alone is ~5%
    }

    [Test]
    public void OptShapedModelWithEveryOptionalPartRoundTrips()
    {
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "opt.safetensors");
        TransformerWeights original = QuantizedTestModels.TinyOptShaped();
        QuantizedCheckpointWriter.Write(path, original, "W8A8");

        TransformerWeights loaded = QuantizedCheckpointReader.Load(path).Weights;

        AssertIdentical(original, loaded);
        Assert.That(loaded.ProjectIn!.Bias, Is.EqualTo(original.ProjectIn!.Bias));
        Assert.That(loaded.EmbeddingNorm!.Bias, Is.EqualTo(original.EmbeddingNorm!.Bias));
        AssertSameLogits(original, loaded, "W8A8");
        AssertSizeNearPayload(path, original, withinFivePercent: false);
    }

    [TestCase(8, true, "W8A8")]
    [TestCase(4, false, "W4A16-RTN")]
    [TestCase(4, true, "W4A8-RTN")]
    public void Stories260KRoundToNearestRoundTrips(int bits, bool symmetric, string scheme)
    {
        TransformerWeights fp32 = Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));
        TransformerWeights quantized = QuantizedTestModels.RoundToNearest(fp32, bits, symmetric);
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "stories260K.q.safetensors");
        QuantizedCheckpointWriter.Write(path, quantized, scheme);

        QuantizedCheckpoint loaded = QuantizedCheckpointReader.Load(path);

        Assert.That(loaded.ConfigName, Is.EqualTo(scheme));
        AssertIdentical(quantized, loaded.Weights);
        AssertSameLogits(quantized, loaded.Weights, scheme);
        AssertSizeNearPayload(path, quantized, withinFivePercent: true);
    }

    [TestCase("W8A8")]
    [TestCase("W4A8-RTN")]
    [TestCase("W4A4-RTN")]
    [TestCase("W4A16-RTN")]
    public void ModelQuantizerOutputReloadsThroughModelLoader(string scheme)
    {
        var fp32 = new TransformerModel(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), Kernel);
        TransformerModel quantized = ModelQuantizer.Quantize(fp32, QuantizationConfig.Parse(scheme));
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, $"stories260K.{scheme}.safetensors");
        QuantizedCheckpointWriter.Write(path, quantized, scheme);

        LoadedModel loaded = ModelLoader.Load(path, new ModelLoadOptions());

        AssertIdentical(quantized.Weights, loaded.Model.Weights);
        Assert.That(loaded.Model.Options.Attention, Is.EqualTo(quantized.Options.Attention));
        Assert.That(loaded.Model.Options.LowBitTokenRatio, Is.EqualTo(quantized.Options.LowBitTokenRatio));
        Assert.That(loaded.Model.Options.FourBitActivationKernel is null, Is.EqualTo(quantized.Options.FourBitActivationKernel is null));
        AssertSameLogits(quantized, loaded.Model);
        AssertSizeNearPayload(path, quantized.Weights, withinFivePercent: true);
    }

    [Test]
    public void RecordedRuntimeOptionsOverrideTheSchemeDefaults()
    {
        // W4A8-RTN alone implies no lower-bit tokens and no 4-bit kernel; this run used both, and other attention settings.
        var runtime = new RuntimeOptions
        {
            FourBitActivationKernel = KernelSelector.Create(new KernelOptions { ActivationBits = 4 }),
            LowBitTokenRatio = 0.5,
            Attention = new AttentionQuantization { QkvBits = 8, KvCacheBits = 4, Log2Softmax = true },
        };
        var original = new TransformerModel(QuantizedTestModels.Tiny(tiedHead: false), Kernel, runtime);
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "tiny.safetensors");
        QuantizedCheckpointWriter.Write(path, original, "W4A8-RTN");

        LoadedModel loaded = ModelLoader.Load(path, new ModelLoadOptions());

        Assert.That(loaded.Model.Options.Attention, Is.EqualTo(runtime.Attention));
        Assert.That(loaded.Model.Options.LowBitTokenRatio, Is.EqualTo(0.5));
        Assert.That(loaded.Model.Options.FourBitActivationKernel, Is.Not.Null, "linears with 4-bit activations get a 4-bit kernel");
        AssertSameLogits(original, loaded.Model);
    }

    [Test]
    public void ModelLoaderRecognisesAQuantizedCheckpoint()
    {
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "tiny.safetensors");
        TransformerWeights original = QuantizedTestModels.Tiny(tiedHead: true);
        QuantizedCheckpointWriter.Write(path, original, "W4A8-MIXED");

        LoadedModel loaded = ModelLoader.Load(path);

        Assert.That(loaded.Format, Is.EqualTo("agilequant"));
        Assert.That(loaded.Tokenizer, Is.Null, "no tokenizer lies beside the file");
        Assert.That(loaded.Model.Options.FourBitActivationKernel, Is.Not.Null, "W4A8-MIXED runs its lower-bit tokens through the 4-bit kernel");
        Assert.That(loaded.Model.Options.LowBitTokenRatio, Is.EqualTo(QuantizationConfig.DefaultMixedLowBitTokenRatio));
        AssertSameLogits(new TransformerModel(original, Kernel, RuntimeFor("W4A8-MIXED")), loaded.Model);
    }

    [Test]
    public void ModelLoaderRefusesAPlainSafeTensorsFile()
    {
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "plain.safetensors");
        var writer = new SafeTensorsWriter();
        writer.AddFloat32("w", [2], [1f, 2f]);
        writer.Write(path);

        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path))!;
        Assert.That(e.Message, Does.Contain("agilequant.format").And.Contain(path));
    }

    [Test]
    public void WriterRefusesAnUnknownSchemeAndReservedKeys()
    {
        TransformerWeights weights = QuantizedTestModels.Tiny(tiedHead: true);
        using var dir = new TemporaryDirectory("aq-qckpt-");
        string path = Path.Combine(dir.FullPath, "x.safetensors");
        Assert.That(() => QuantizedCheckpointWriter.Write(path, weights, "W3A3"), Throws.ArgumentException.With.Message.Contains("W4A8-GPTQ"));
        Assert.That(() => QuantizedCheckpointWriter.Write(path, weights, "W8A8", new Dictionary<string, string> { ["agilequant.format"] = "2" }),
            Throws.ArgumentException.With.Message.Contains("reserved"));
        Assert.That(File.Exists(path), Is.False);
    }

    [Test]
    public void FromPackedRebuildsTheSameMatrixAndRefusesBadInput()
    {
        var m = (PackedInt4Matrix)QuantizedTestModels.Tiny(tiedHead: true).Layers[0].Down.Weight; // (64, 172), asymmetric g32
        PackedInt4Matrix copy = PackedInt4Matrix.FromPacked(m.Packed, m.Scales, m.ZeroPoints, m.Rows, m.Cols, m.GroupSize);
        Assert.That(copy.Packed.ToArray(), Is.EqualTo(m.Packed.ToArray()));
        Assert.That(copy.ZeroPoints.ToArray(), Is.EqualTo(m.ZeroPoints.ToArray()));
        Assert.That(copy.Dequantize(63, 171), Is.EqualTo(m.Dequantize(63, 171)));

        byte[] padded = m.Packed.ToArray();
        padded[m.RowBytes - 1] = 0x10; // column 191: a padding nibble past column 171
        Assert.That(() => PackedInt4Matrix.FromPacked(padded, m.Scales, m.ZeroPoints, m.Rows, m.Cols, m.GroupSize),
            Throws.ArgumentException.With.Message.Contains("padding"));
        Assert.That(() => PackedInt4Matrix.FromPacked(m.Packed[1..], m.Scales, m.ZeroPoints, m.Rows, m.Cols, m.GroupSize),
            Throws.ArgumentException.With.Message.Contains("packed bytes"));
        Assert.That(() => PackedInt4Matrix.FromPacked(m.Packed, m.Scales, m.ZeroPoints[1..], m.Rows, m.Cols, m.GroupSize),
            Throws.ArgumentException.With.Message.Contains("zero points"));
        byte[] zeros = m.ZeroPoints.ToArray();
        zeros[0] = 16;
        Assert.That(() => PackedInt4Matrix.FromPacked(m.Packed, m.Scales, zeros, m.Rows, m.Cols, m.GroupSize), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    private static RuntimeOptions RuntimeFor(string scheme) => ModelQuantizer.RuntimeOptionsFor(Kernel, QuantizationConfig.Parse(scheme));

    /// <summary>Both weights run as <paramref name="scheme"/> prescribes (4-bit kernel, attention quantization, mixed tokens).</summary>
    private static void AssertSameLogits(TransformerWeights expected, TransformerWeights actual, string scheme) =>
        AssertSameLogits(new TransformerModel(expected, Kernel, RuntimeFor(scheme)), new TransformerModel(actual, Kernel, RuntimeFor(scheme)));

    private static void AssertSameLogits(TransformerModel expected, TransformerModel actual)
    {
        InferenceContext a = expected.CreateContext(), b = actual.CreateContext();
        AssertBitIdentical(b.Forward(Prompt, allLogits: true), a.Forward(Prompt, allLogits: true), "prefill logits");
        AssertBitIdentical(b.Forward([4]), a.Forward([4]), "decode logits");
    }

    private static void AssertBitIdentical(float[] actual, float[] expected, string what)
    {
        Assert.That(expected, Has.All.Matches<float>(float.IsFinite), what + ": finite, so that bit equality means something");
        Assert.That(actual.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), what);
    }

    private static void AssertSizeNearPayload(string path, TransformerWeights weights, bool withinFivePercent)
    {
        long file = new FileInfo(path).Length, payload = QuantizedTestModels.PackedPayloadBytes(weights);
        long header;
        using (SafeTensorsFile opened = SafeTensorsFile.Open(path)) header = 8 + opened.HeaderLength;
        // int8 codes are stored (rows, cols), without the kernel layout's padding to 32 columns.
        long int8Padding = QuantizedTestModels.Linears(weights).Select(l => l.Weight).OfType<Int8RowMatrix>().Sum(m => (long)m.Rows * (m.RowStride - m.Cols));
        double ratio = (double)file / payload;
        TestContext.Out.WriteLine($"{Path.GetFileName(path)}: file {file} bytes, packed payload {payload} bytes, ratio {ratio:F4} (header {header} bytes, int8 padding not stored {int8Padding} bytes)");
        Assert.That(file, Is.EqualTo(header + payload - int8Padding), "the data section holds the payload once (a tied head not repeated)");
        if (withinFivePercent) Assert.That(ratio, Is.InRange(0.95, 1.05), $"file {file} bytes vs packed payload {payload} bytes");
    }

    private static void AssertIdentical(TransformerWeights expected, TransformerWeights actual)
    {
        Assert.That(actual.Config, Is.EqualTo(expected.Config));
        Assert.That(actual.TokenEmbedding, Is.EqualTo(expected.TokenEmbedding));
        Assert.That(actual.PositionEmbedding, Is.EqualTo(expected.PositionEmbedding));
        NormLayer[] en = QuantizedTestModels.Norms(expected).ToArray(), an = QuantizedTestModels.Norms(actual).ToArray();
        Assert.That(an, Has.Length.EqualTo(en.Length));
        for (int i = 0; i < en.Length; i++)
        {
            Assert.That(an[i].Weight, Is.EqualTo(en[i].Weight), $"norm {i} weight");
            Assert.That(an[i].Bias, Is.EqualTo(en[i].Bias), $"norm {i} bias");
            Assert.That((an[i].Kind, an[i].Epsilon), Is.EqualTo((en[i].Kind, en[i].Epsilon)), $"norm {i} kind and epsilon");
        }
        LinearLayer[] el = QuantizedTestModels.Linears(expected).ToArray(), al = QuantizedTestModels.Linears(actual).ToArray();
        Assert.That(al, Has.Length.EqualTo(el.Length));
        for (int i = 0; i < el.Length; i++)
        {
            string at = $"linear {i}";
            Assert.That((al[i].ActivationBits, al[i].LowBitActivationBits), Is.EqualTo((el[i].ActivationBits, el[i].LowBitActivationBits)), at);
            Assert.That(al[i].Bias, Is.EqualTo(el[i].Bias), at + " bias");
            Assert.That(al[i].Weight.GetType(), Is.EqualTo(el[i].Weight.GetType()), at + " format");
            switch (el[i].Weight, al[i].Weight)
            {
                case (Fp32Matrix e, Fp32Matrix a):
                    Assert.That((a.Rows, a.Cols, a.Data), Is.EqualTo((e.Rows, e.Cols, e.Data)), at);
                    break;
                case (Int8RowMatrix e, Int8RowMatrix a):
                    Assert.That((a.Rows, a.Cols), Is.EqualTo((e.Rows, e.Cols)), at);
                    Assert.That(a.Codes.ToArray(), Is.EqualTo(e.Codes.ToArray()), at + " codes");
                    Assert.That(a.Scales.ToArray(), Is.EqualTo(e.Scales.ToArray()), at + " scales");
                    break;
                case (PackedInt4Matrix e, PackedInt4Matrix a):
                    Assert.That((a.Rows, a.Cols, a.GroupSize, a.IsSymmetric), Is.EqualTo((e.Rows, e.Cols, e.GroupSize, e.IsSymmetric)), at);
                    Assert.That(a.Packed.ToArray(), Is.EqualTo(e.Packed.ToArray()), at + " packed");
                    Assert.That(a.Scales.ToArray(), Is.EqualTo(e.Scales.ToArray()), at + " scales");
                    Assert.That(a.ZeroPoints.ToArray(), Is.EqualTo(e.ZeroPoints.ToArray()), at + " zero points");
                    break;
            }
        }
    }
}
