using AgileQuant.Cli.Bench;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Cli;

/// <summary>The benchmark's synthetic GGUF models: shapes, determinism, one set of values across file types, and scheme loading.</summary>
public class SyntheticGgufModelTests
{
    [Test]
    public void Shapes_ParseWithOptionalLayerCount()
    {
        TransformerConfig llama = SyntheticModelShape.Parse("llama7b").Config;
        Assert.That((llama.HiddenSize, llama.IntermediateSize, llama.NumHeads, llama.NumLayers, llama.VocabSize), Is.EqualTo((4096, 11008, 32, 4, 32000)));
        Assert.That(SyntheticModelShape.Parse("llama7b-2l").Config.NumLayers, Is.EqualTo(2));
        Assert.That(SyntheticModelShape.Parse("tinyllama").Config.NumKvHeads, Is.EqualTo(4));
        Assert.That(SyntheticModelShape.Parse("stories110m").Name, Is.EqualTo("stories110m-12l"));
        Assert.That(Assert.Throws<AgileQuantException>(() => SyntheticModelShape.Parse("gpt5"))!.Message, Does.Contain("llama7b"));
    }

    [Test]
    public void SameSeed_SameBytes_AndQ4_0HoldsTheF32Values()
    {
        using var temp = new TemporaryDirectory("aq-synthetic-");
        SyntheticModelShape shape = SyntheticModelShape.Parse("small-1l");
        string a = Path.Combine(temp.FullPath, "a.gguf"), b = Path.Combine(temp.FullPath, "b.gguf"), q4 = Path.Combine(temp.FullPath, "q4.gguf");
        SyntheticGgufModel.Write(a, shape, GgmlType.F32);
        SyntheticGgufModel.Write(b, shape, GgmlType.F32);
        SyntheticGgufModel.Write(q4, shape, GgmlType.Q4_0);
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)));

        GgufFile f32File = GgufFile.Read(a), q4File = GgufFile.Read(q4);
        var fp32 = (Fp32Matrix)GgufModelReader.ReadWeights(f32File, GgufModelReader.ReadConfig(f32File)).Layers[0].Down.Weight;
        var int4 = (PackedInt4Matrix)GgufModelReader.ReadWeights(q4File, GgufModelReader.ReadConfig(q4File)).Layers[0].Down.Weight;
        float amplitude = 1f / MathF.Sqrt(shape.Config.IntermediateSize);
        Assert.That(fp32.Data.Max(), Is.LessThanOrEqualTo(amplitude).And.GreaterThan(0.9f * amplitude));
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < fp32.Cols; c++)
            {
                // Half a step, except a full step on the side Q4_0 clamps (codes −8..7 around the block's extreme).
                float step = MathF.Abs(int4.Scale(r, c / 32));
                Assert.That(int4.Dequantize(r, c), Is.EqualTo(fp32.Data[r * fp32.Cols + c]).Within(step * 1.001f + 1e-7f), $"({r}, {c})");
            }
    }

    [Test]
    public void SchemeLoader_W4A4_QuantizesEveryLinearInputTo4Bits_AndRuns()
    {
        using var temp = new TemporaryDirectory("aq-synthetic-");
        string path = Path.Combine(temp.FullPath, "q4.gguf");
        SyntheticGgufModel.Write(path, SyntheticModelShape.Parse("small-1l"), GgmlType.Q4_0);
        TransformerModel model = GgufSchemeLoader.Load(path, "W4A4-RTN", TestKernels.Default);
        LayerWeights layer = model.Weights.Layers[0];
        Assert.That(new[] { layer.Query, layer.Key, layer.Value, layer.Output, layer.Gate!, layer.Up, layer.Down }.Select(l => l.ActivationBits), Is.All.EqualTo(4));
        Assert.That(model.Options.FourBitActivationKernel, Is.Not.Null);
        float[] logits = model.CreateContext().Forward([1, 300, 301]);
        Assert.That(logits.All(float.IsFinite), Is.True);
    }
}
