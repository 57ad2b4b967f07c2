using AgileQuant.Models;
using AgileQuant.Models.Onnx;
using static AgileQuant.Tests.Models.Onnx.OnnxModelBuilder;

namespace AgileQuant.Tests.Models.Onnx;

/// <summary>Hand-built ONNX byte streams: what the reader accepts, and the refusals it must raise for broken files.</summary>
[TestFixture]
public sealed class OnnxCorruptInputTests
{
    private static ModelFormatException Refused(byte[] bytes) =>
        Assert.Throws<ModelFormatException>(() => OnnxModelFile.Parse(bytes, "model.onnx"))!;

    [Test]
    public void ReadsRawAndPackedFloatDataAndNodes()
    {
        byte[] bytes = Model(
            Tensor("w", [2, 3], 1, raw: FloatBytes(1, 2, 3, 4, 5, 6)),
            Tensor("b", [2], 1, floats: [0.5f, -1.5f]),
            Tensor("shape", [1], 7, raw: BitConverter.GetBytes(12L)));
        OnnxModelFile model = OnnxModelFile.Parse(bytes, "model.onnx");
        Assert.That(model.IrVersion, Is.EqualTo(7));
        Assert.That(model.Producer, Is.EqualTo("test"));
        Assert.That(model.Find("w")!.Dims, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(model.Find("w")!.ToFloat32(), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(model.Find("b")!.ToFloat32(), Is.EqualTo(new[] { 0.5f, -1.5f }));
        Assert.That(model.Find("shape")!.ToInt64(), Is.EqualTo(new[] { 12L }));
        Assert.That(model.Nodes.Single().OpType, Is.EqualTo("MatMul"));
        Assert.That(model.Nodes.Single().Inputs, Is.EqualTo(new[] { "x", "w" }));
    }

    [Test]
    public void EveryTruncationParsesOrRaisesModelFormatException()
    {
        byte[] bytes = Model(Tensor("w", [2, 3], 1, raw: FloatBytes(1, 2, 3, 4, 5, 6)), Tensor("b", [2], 1, floats: [0.5f, -1.5f]));
        int refused = 0;
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            try
            {
                OnnxModelFile.Parse(bytes[..cut], "model.onnx");
            }
            catch (ModelFormatException e)
            {
                Assert.That(e.Message, Does.StartWith("model.onnx"));
                refused++;
            }
        }
        Assert.That(refused, Is.GreaterThan(bytes.Length - 10)); // all but cuts at top-level field boundaries
    }

    [Test]
    public void LengthBeyondTheMessageIsRefused()
    {
        byte[] bytes = Model(Tensor("w", [2], 1, raw: FloatBytes(1, 2)));
        // the graph field's length: byte after the graph key (field 7, wire 2 = 0x3A)
        int graphKey = Array.IndexOf(bytes, (byte)0x3A);
        byte[] lying = [.. bytes[..(graphKey + 1)], .. Wire.Varint(1_000_000), .. bytes[(graphKey + 2)..]];
        Assert.That(Refused(lying).Message, Does.Contain("expected a length of at most"));
    }

    [Test]
    public void ExternalDataIsRefusedWithAClearMessage()
    {
        byte[] location = Wire.Field(14, 1);
        byte[] entry = Wire.Bytes(13, [.. Wire.Text(1, "location"), .. Wire.Text(2, "weights.bin")]);
        ModelFormatException e = Refused(Model(Tensor("w", [2], 1, null, null, entry, location)));
        Assert.That(e.TensorName, Is.EqualTo("w"));
        Assert.That(e.Message, Does.Contain("external data"));
    }

    [Test]
    public void WrongDataTypeIsRefusedWhenReadAsFloat()
    {
        OnnxModelFile model = OnnxModelFile.Parse(Model(Tensor("w", [2], 11, raw: new byte[16])), "model.onnx");
        var e = Assert.Throws<ModelFormatException>(() => model.Find("w")!.ToFloat32())!;
        Assert.That(e.Message, Does.Contain("expected data type FLOAT (1), found Double (11)"));
        Assert.That(Refused(Model(Tensor("w", [2], 99, raw: new byte[8]))).Message, Does.Contain("expected a known data type, found 99"));
    }

    [Test]
    public void DimsThatDisagreeWithTheDataAreRefused()
    {
        Assert.That(Refused(Model(Tensor("w", [2, 3], 1, raw: FloatBytes(1, 2, 3)))).Message,
            Does.Contain("expected 6 × 4 = 24 bytes of raw_data for dims [2, 3], found 12"));
        Assert.That(Refused(Model(Tensor("w", [3], 1, floats: [1f, 2f]))).Message, Does.Contain("expected 3 float_data values"));
        Assert.That(Refused(Model(Tensor("w", [-2], 1, raw: FloatBytes(1, 2)))).Message, Does.Contain("expected non-negative dims"));
        Assert.That(Refused(Model(Tensor("w", [1L << 40, 1L << 40], 1, raw: FloatBytes(1)))).Message, Does.Contain("expected at most"));
        Assert.That(Refused(Model(Tensor("w", [2], 1, raw: FloatBytes(1, 2), floats: [1f, 2f]))).Message, Does.Contain("several"));
        Assert.That(Refused(Model(Tensor("w", [2], 1))).Message, Does.Contain("found none"));
    }

    [Test]
    public void MalformedWireDataIsRefused()
    {
        Assert.That(Refused([0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).Message, Does.Contain("varint"));
        Assert.That(Refused([0x0B]).Message, Does.Contain("wire type")); // field 1, start-group
        Assert.That(Refused(Wire.Field(1, 7)).Message, Does.Contain("expected a graph"));
        Assert.That(Refused(Model(Tensor("w", [1], 1, raw: FloatBytes(1)), Tensor("w", [1], 1, raw: FloatBytes(2)))).Message, Does.Contain("unique"));
        Assert.That(Refused(Model(Tensor("", [1], 1, raw: FloatBytes(1)))).Message, Does.Contain("expected a name"));
    }

    [Test]
    public void FloatOrInt64DataInAnotherTypedFieldIsRefused()
    {
        byte[] int32Data = Wire.Bytes(5, [1, 2]); // int32_data, packed
        Assert.That(Refused(Model(Tensor("w", [2], 1, null, null, int32Data))).Message, Does.Contain("expected Float data in raw_data or float_data"));
        Assert.That(Refused(Model(Tensor("s", [2], 7, null, null, int32Data))).Message, Does.Contain("expected Int64 data in raw_data or int64_data"));
    }

    [Test]
    public void KeyBiasAddWithoutOutputsIsRefusedByTheMapping()
    {
        byte[] broken = TinyBert([.. TinyBertNodes()[..2], Node("Add", ["key_out", "encoder.layer.0.attention.self.key.bias"], [])]);
        var e = Assert.Throws<ModelFormatException>(() => BertOnnxLoader.Map(OnnxModelFile.Parse(broken, "model.onnx")))!;
        Assert.That(e.Message, Does.Contain("pass the head count explicitly"));
    }

    [Test]
    public void NonBertGraphIsRefusedByTheMapping()
    {
        OnnxModelFile model = OnnxModelFile.Parse(Model(Tensor("w", [2], 1, raw: FloatBytes(1, 2))), "model.onnx");
        var e = Assert.Throws<ModelFormatException>(() => BertOnnxLoader.Map(model))!;
        Assert.That(e.TensorName, Is.EqualTo("embeddings.word_embeddings.weight"));
    }
}
