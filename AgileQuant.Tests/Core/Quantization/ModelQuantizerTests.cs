using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;

namespace AgileQuant.Tests.Core.Quantization;

/// <summary>Quantizing the bundled stories260K model (committed in assets/): GPTQ against RTN per layer, and quantized inference end to end.</summary>
[TestFixture]
public class ModelQuantizerTests
{
    private static LoadedModel Bundled() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions());

    private static IReadOnlyList<IReadOnlyList<int>> Stories(LoadedModel m, int skip, int take) =>
        TextCorpus.SplitDocuments(File.ReadAllText(SharedAssets.InRepo("assets/text/tinystories_valid_first100.txt")), "<|endoftext|>")
            .Skip(skip).Take(take).Select(s => (IReadOnlyList<int>)m.Tokenizer!.EncodeToIds(s)).ToArray();

    /// <summary>Keeps every linear input of the FP32 model, per layer and slot.</summary>
    private sealed class InputRecorder : ILinearInputObserver
    {
        public readonly Dictionary<(int, LinearSlot), List<float[]>> Inputs = [];

        public void Observe(int layer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
        {
            if (!Inputs.TryGetValue((layer, slot), out var list)) Inputs[(layer, slot)] = list = [];
            list.Add(input.ToArray());
        }
    }

    // ||(W − Ŵ) Xᵀ||_F² over all recorded input rows x (cols)
    private static double OutputError(float[] w, float[] wHat, int rows, int cols, IEnumerable<float[]> inputs)
    {
        double error = 0;
        foreach (float[] block in inputs)
            for (int t = 0; t < block.Length / cols; t++)
                for (int r = 0; r < rows; r++)
                {
                    double d = 0;
                    for (int c = 0; c < cols; c++) d += (w[r * cols + c] - wHat[r * cols + c]) * (double)block[t * cols + c];
                    error += d * d;
                }
        return error;
    }

    [Test]
    public void GptqHasLowerLayerOutputErrorThanRtnOnEveryLinear()
    {
        LoadedModel m = Bundled();
        var recorder = new InputRecorder();
        InferenceContext context = m.Model.CreateContext();
        context.Observer = recorder;
        foreach (IReadOnlyList<int> story in Stories(m, 0, 20)) { context.Reset(); context.Forward(story.Take(512).ToArray()); }
        var settings = QuantizationConfig.Parse("W4A16-GPTQ").WeightSettings() with { StaticGroups = true };
        for (int l = 0; l < m.Model.Config.NumLayers; l++)
        {
            LayerWeights layer = m.Model.Weights.Layers[l];
            foreach ((string name, LinearLayer linear, LinearSlot slot) in new[]
            {
                ("q", layer.Query, LinearSlot.QueryKeyValue), ("k", layer.Key, LinearSlot.QueryKeyValue), ("v", layer.Value, LinearSlot.QueryKeyValue),
                ("o", layer.Output, LinearSlot.AttentionOutput), ("gate", layer.Gate!, LinearSlot.MlpInput), ("up", layer.Up, LinearSlot.MlpInput),
                ("down", layer.Down, LinearSlot.MlpDown),
            })
            {
                var w = (Fp32Matrix)linear.Weight;
                var hessian = new HessianAccumulator(w.Cols);
                foreach (float[] block in recorder.Inputs[(l, slot)]) hessian.Add(block, block.Length / w.Cols);
                float[] rtn = RoundToNearestQuantizer.Quantize(w.Data, w.Rows, w.Cols, settings).Dequantize();
                float[] gptq = GptqQuantizer.Quantize(w.Data, w.Rows, w.Cols, hessian, settings).Dequantize();
                double rtnError = OutputError(w.Data, rtn, w.Rows, w.Cols, recorder.Inputs[(l, slot)]);
                double gptqError = OutputError(w.Data, gptq, w.Rows, w.Cols, recorder.Inputs[(l, slot)]);
                TestContext.Out.WriteLine($"layer {l} {name}: ||WX − Q(W)X||² GPTQ/RTN = {gptqError / rtnError:F3}");
                Assert.That(gptqError, Is.LessThan(rtnError), $"layer {l} {name}");
            }
        }
    }

    [Test]
    public void W8A8StaysCloseToFp32AndW4A4IsWorseThanW4A8()
    {
        LoadedModel m = Bundled();
        IReadOnlyList<IReadOnlyList<int>> eval = Stories(m, 80, 10);
        DistributionComparisonResult Compare(string name) =>
            DistributionComparison.Compare(m.Model, ModelQuantizer.Quantize(m.Model, QuantizationConfig.Parse(name)), eval, PerplexityProtocol.Document, 512);
        DistributionComparisonResult w8a8 = Compare("W8A8"), w4a8 = Compare("W4A8-RTN"), w4a4 = Compare("W4A4-RTN");
        TestContext.Out.WriteLine($"KL vs FP32: W8A8 {w8a8.MeanKlDivergence:G3}, W4A8-RTN {w4a8.MeanKlDivergence:G3}, W4A4-RTN {w4a4.MeanKlDivergence:G3}");
        Assert.That(w8a8.MeanKlDivergence, Is.LessThan(0.01));
        Assert.That(w8a8.Candidate.Perplexity / w8a8.Reference.Perplexity, Is.LessThan(1.01));
        Assert.That(w4a8.MeanKlDivergence, Is.GreaterThan(w8a8.MeanKlDivergence));
        Assert.That(w4a4.MeanKlDivergence, Is.GreaterThan(w4a8.MeanKlDivergence));
    }

    [Test]
    public void QuantizedLinearsUseThePackedFormats()
    {
        LoadedModel m = Bundled();
        LayerWeights w8 = ModelQuantizer.Quantize(m.Model, QuantizationConfig.Parse("W8A8")).Weights.Layers[0];
        LayerWeights w4 = ModelQuantizer.Quantize(m.Model, QuantizationConfig.Parse("W4A4-RTN")).Weights.Layers[0];
        LayerWeights mixed = ModelQuantizer.Quantize(m.Model, QuantizationConfig.Parse("W4A8-MIXED"), new ModelQuantizationOptions { Calibration = [m.Tokenizer!.EncodeToIds("Once upon a time there was a cat.").ToArray()] }).Weights.Layers[0];
        Assert.That(w8.Down.Weight, Is.TypeOf<Int8RowMatrix>());
        Assert.That(w4.Down.Weight, Is.TypeOf<PackedInt4Matrix>());
        Assert.That((w4.Down.ActivationBits, w8.Down.ActivationBits), Is.EqualTo((4, 8)));
        Assert.That((mixed.Query.LowBitActivationBits, mixed.Output.LowBitActivationBits, mixed.Up.LowBitActivationBits, mixed.Down.LowBitActivationBits), Is.EqualTo((0, 4, 4, 4)));
        Assert.That(((PackedInt4Matrix)w4.Down.Weight).GroupCount, Is.EqualTo(6), "172 columns in groups of 32: five full and one of 12");
    }

    [Test]
    public void GptqWithoutCalibrationIsRefused() =>
        Assert.Throws<AgileQuant.Core.AgileQuantException>(() => ModelQuantizer.Quantize(Bundled().Model, QuantizationConfig.Parse("W4A8-GPTQ")));
}
