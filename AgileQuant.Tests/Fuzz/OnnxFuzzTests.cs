using AgileQuant.Core.Encoder;
using AgileQuant.Models;
using AgileQuant.Models.Onnx;
using AgileQuant.Tests.Models.Onnx;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the ONNX initializer reader (<see cref="OnnxModelFile.Read"/>, its protobuf reader, the FP32/int64 conversions)
/// and <see cref="BertOnnxLoader.Map"/> on every model that parses. Every input must load or fail with a
/// <see cref="ModelFormatException"/> naming the file.
/// </summary>
[Category("Fuzz")]
public sealed class OnnxFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-onnx-", inMemory: true)
{
    /// <summary>Seeds: a one-layer BERT graph and a plain graph with float raw_data, float_data and int64 initializers.</summary>
    private static List<byte[]> Seeds() =>
    [
        OnnxModelBuilder.TinyBert(),
        OnnxModelBuilder.Model(
            OnnxModelBuilder.Tensor("w", [2, 3], 1, raw: OnnxModelBuilder.FloatBytes(1, 2, 3, 4, 5, 6)),
            OnnxModelBuilder.Tensor("b", [2], 1, floats: [0.5f, -1.5f]),
            OnnxModelBuilder.Tensor("shape", [1], 7, raw: BitConverter.GetBytes(12L))),
    ];

    private static void ReadAndMap(string path)
    {
        OnnxModelFile model = OnnxModelFile.Read(path);
        foreach (OnnxTensor tensor in model.Initializers)
        {
            if (tensor.DataType == OnnxDataType.Float) _ = tensor.ToFloat32();
            else if (tensor.DataType == OnnxDataType.Int64) _ = tensor.ToInt64();
        }
        _ = BertOnnxLoader.Map(model);
    }

    [Test]
    public void TinyBertSeedMaps()
    {
        EncoderWeights weights = BertOnnxLoader.Load(Temp.Write("seed.onnx", Seeds()[0]));
        Assert.That((weights.Config.NumLayers, weights.Config.HiddenSize, weights.Config.NumHeads, weights.Config.IntermediateSize),
            Is.EqualTo((1, 4, 2, 8)));
    }

    [Test]
    public void OnnxReaderOnlyLoadsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "model.onnx");
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 10_500, FuzzCampaign.PerInputLimit, StackProbability: 0.4);
        FuzzReport report = FuzzRunner.Run(Seeds(), [new ProtobufFieldMutator(), new ProtobufFieldMutator(), new ByteMutator()],
            FuzzRunner.ThroughFile(path, ReadAndMap), e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("ONNX initializers + BERT mapping (OnnxModelFile, BertOnnxLoader)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(10));
    }
}
