using AgileQuant.Core;
using AgileQuant.Core.Encoder;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Onnx;

namespace AgileQuant.Tests.Models.Onnx;

/// <summary>Quantized all-MiniLM-L6-v2 against its FP32 self, and the package reader against the runtime's resource loader.</summary>
[TestFixture]
[NonParallelizable]
public sealed class MiniLmQuantizationTests
{
    [Test]
    public void W8A8EmbeddingsStayCloseToFp32()
    {
        string[] lines = MiniLmPackage.WikiLines(12);
        EncoderModel w8a8 = EncoderQuantizer.Quantize(MiniLmPackage.Model, QuantizationConfig.Parse("W8A8"));
        EncoderContext fp32 = MiniLmPackage.Model.CreateContext(), quantized = w8a8.CreateContext();
        double[] cosines = lines.Select(l => MiniLmPackage.Tokens(l, 64)).Select(ids => MiniLmPackage.Cosine(fp32.Embed(ids), quantized.Embed(ids))).ToArray();
        TestContext.Out.WriteLine($"W8A8 cosine to FP32: min {cosines.Min():F6}, mean {cosines.Average():F6}");
        Assert.That(cosines, Has.All.GreaterThan(0.99));
        Assert.That(w8a8.Weights.WeightBytes, Is.LessThan(MiniLmPackage.Model.Weights.WeightBytes));
    }

    [Test]
    public void SmoothingKeepsFp32AndHelpsW8A8()
    {
        string[] all = MiniLmPackage.WikiLines(232);
        int[][] eval = all[..24].Select(l => MiniLmPackage.Tokens(l, 128)).ToArray();
        int[][] calibration = all[200..].Select(l => MiniLmPackage.Tokens(l, 128)).ToArray();
        EncoderModel smoothed = EncoderSmoothing.Smooth(MiniLmPackage.Model, calibration);
        QuantizationConfig w8a8 = QuantizationConfig.Parse("W8A8");
        EncoderContext fp32 = MiniLmPackage.Model.CreateContext(), sm = smoothed.CreateContext();
        EncoderContext plain = EncoderQuantizer.Quantize(MiniLmPackage.Model, w8a8).CreateContext();
        EncoderContext smoothW8 = EncoderQuantizer.Quantize(smoothed, w8a8).CreateContext();
        var same = new List<double>();
        var plainCos = new List<double>();
        var smoothCos = new List<double>();
        foreach (int[] ids in eval)
        {
            float[] reference = fp32.Embed(ids);
            same.Add(MiniLmPackage.Cosine(reference, sm.Embed(ids)));
            plainCos.Add(MiniLmPackage.Cosine(reference, plain.Embed(ids)));
            smoothCos.Add(MiniLmPackage.Cosine(reference, smoothW8.Embed(ids)));
        }
        TestContext.Out.WriteLine($"smoothed FP32 min {same.Min():F8}; W8A8 mean {plainCos.Average():F6} min {plainCos.Min():F6}; smoothed W8A8 mean {smoothCos.Average():F6} min {smoothCos.Min():F6}");
        Assert.That(same, Has.All.GreaterThanOrEqualTo(0.99999));
        Assert.That(smoothCos.Average(), Is.GreaterThan(plainCos.Average()));
    }

    [Test]
    public void W8A8GptqKeepsTheInt8FormatsAndBeatsRoundToNearest()
    {
        string[] all = MiniLmPackage.WikiLines(232);
        int[][] eval = all[..16].Select(l => MiniLmPackage.Tokens(l, 64)).ToArray();
        int[][] calibration = all[200..].Select(l => MiniLmPackage.Tokens(l, 128)).ToArray();
        EncoderModel smoothed = EncoderSmoothing.Smooth(MiniLmPackage.Model, calibration, alpha: 0.7);
        EncoderModel rtn = EncoderQuantizer.Quantize(smoothed, QuantizationConfig.Parse("W8A8"));
        EncoderModel gptq = EncoderQuantizer.Quantize(smoothed, EncoderSchemes.W8A8Gptq, new ModelQuantizationOptions { Calibration = calibration });
        foreach (LayerWeights layer in gptq.Weights.Layers)
            foreach (LinearLayer linear in new[] { layer.Query, layer.Key, layer.Value, layer.Output, layer.Up, layer.Down })
            {
                Assert.That(linear.Weight, Is.InstanceOf<Int8RowMatrix>());
                Assert.That(linear.ActivationBits, Is.EqualTo(8));
            }
        Assert.That(gptq.Weights.WeightBytes, Is.EqualTo(rtn.Weights.WeightBytes));
        Assert.That(gptq.Options.Attention, Is.EqualTo(rtn.Options.Attention));
        EncoderContext fp32 = MiniLmPackage.Model.CreateContext(), r = rtn.CreateContext(), g = gptq.CreateContext();
        var rtnCos = new List<double>();
        var gptqCos = new List<double>();
        foreach (int[] ids in eval)
        {
            float[] reference = fp32.Embed(ids);
            rtnCos.Add(MiniLmPackage.Cosine(reference, r.Embed(ids)));
            gptqCos.Add(MiniLmPackage.Cosine(reference, g.Embed(ids)));
        }
        TestContext.Out.WriteLine($"smoothed (α 0.7) W8A8 mean {rtnCos.Average():F6} min {rtnCos.Min():F6}; W8A8-GPTQ mean {gptqCos.Average():F6} min {gptqCos.Min():F6}");
        Assert.That(gptqCos.Average(), Is.GreaterThan(rtnCos.Average()));
        Assert.That(gptqCos, Has.All.GreaterThan(0.99));
    }

    [Test]
    public void GptqWithoutCalibrationIsRefused()
    {
        Assert.Throws<AgileQuantException>(() => EncoderQuantizer.Quantize(MiniLmPackage.Model, QuantizationConfig.Parse("W4A8-GPTQ")));
        Assert.Throws<AgileQuantException>(() => EncoderQuantizer.Quantize(MiniLmPackage.Model, QuantizationConfig.Parse("W4A8-MIXED"),
            new ModelQuantizationOptions { Calibration = [[101, 102]] }));
    }

    [Test]
    public void ManifestResourcesMatchTheRuntimeLoader()
    {
        Assert.That(ManifestResourceReader.Read(MiniLmPackage.AssemblyPath, "vocab.txt"), Is.EqualTo(MiniLmPackage.ResourceViaRuntime("vocab.txt")));
        Assert.That(ManifestResourceReader.ListNames(MiniLmPackage.AssemblyPath), Has.Some.EndsWith("model.onnx"));
        var e = Assert.Throws<ModelFormatException>(() => ManifestResourceReader.Read(MiniLmPackage.AssemblyPath, "missing.bin"))!;
        Assert.That(e.Message, Does.Contain("found 0"));
        string notAssembly = Path.Combine(TestContext.CurrentContext.WorkDirectory, "not-an-assembly.dll");
        File.WriteAllBytes(notAssembly, new byte[256]);
        Assert.Throws<ModelFormatException>(() => ManifestResourceReader.Read(notAssembly, "model.onnx"));
    }
}
