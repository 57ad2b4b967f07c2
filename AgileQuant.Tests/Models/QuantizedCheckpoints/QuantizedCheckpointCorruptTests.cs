using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using AgileQuant.Models;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.QuantizedCheckpoints;

/// <summary>Corrupt or mismatched quantized checkpoints are refused with a ModelFormatException naming what and where.</summary>
[TestFixture]
public class QuantizedCheckpointCorruptTests
{
    private TemporaryDirectory _dir = null!;
    private string _valid = null!;

    [OneTimeSetUp]
    public void WriteValidCheckpoint()
    {
        _dir = new TemporaryDirectory("aq-qckpt-bad-");
        _valid = Path.Combine(_dir.FullPath, "valid.safetensors");
        QuantizedCheckpointWriter.Write(_valid, QuantizedTestModels.Tiny(tiedHead: true), "W4A8-RTN");
    }

    [OneTimeTearDown]
    public void DeleteFiles() => _dir.Dispose();

    /// <summary>A change to the valid file: its metadata, or one tensor (return null to drop it), plus tensors to add.</summary>
    public sealed record Corruption(
        string Name,
        Action<Dictionary<string, string>>? Metadata = null,
        Func<SafeTensorInfo, byte[], (SafeTensorsDType DType, long[] Shape, byte[] Data)?>? Tensor = null,
        Action<SafeTensorsWriter>? Add = null)
    {
        /// <inheritdoc />
        public override string ToString() => Name;
    }

    private static Action<Dictionary<string, string>> EditJson(string key, Action<JsonObject> edit) => metadata =>
    {
        JsonObject json = JsonNode.Parse(metadata[key])!.AsObject();
        edit(json);
        metadata[key] = json.ToJsonString();
    };

    private static Func<SafeTensorInfo, byte[], (SafeTensorsDType, long[], byte[])?> EditTensor(string name, Func<SafeTensorInfo, byte[], (SafeTensorsDType, long[], byte[])?> edit) =>
        (info, data) => info.Name == name ? edit(info, data) : (info.DType, info.Shape.ToArray(), data);

    private static IEnumerable<TestCaseData> Cases()
    {
        TestCaseData Case(Corruption c, string? tensor, params string[] message) => new TestCaseData(c, tensor, message).SetName("Refuses_" + c.Name);

        yield return Case(new("MissingFormatVersion", Metadata: m => m.Remove("agilequant.format")), null,
            "expected the metadata key agilequant.format", "found none");
        yield return Case(new("UnknownFormatVersion", Metadata: m => m["agilequant.format"] = "3"), null,
            "expected agilequant.format \"1\" or \"2\", found \"3\"");
        yield return Case(new("MalformedConfigJson", Metadata: m => m["agilequant.transformer_config"] = "{\"Family\": \"llama\","), null,
            "expected well-formed JSON in agilequant.transformer_config");
        yield return Case(new("ConfigMissingAField", Metadata: EditJson("agilequant.transformer_config", j => j.Remove("HiddenSize"))), null,
            "agilequant.transformer_config", "HiddenSize");
        yield return Case(new("ConfigUnknownField", Metadata: EditJson("agilequant.transformer_config", j => j["AttentionSinkTokens"] = 64)), null,
            "agilequant.transformer_config", "AttentionSinkTokens");
        yield return Case(new("ConfigUnknownEnum", Metadata: EditJson("agilequant.transformer_config", j => j["Norm"] = "BatchNorm")), null,
            "agilequant.transformer_config", "Norm");
        yield return Case(new("ConfigUnknownFamily", Metadata: EditJson("agilequant.transformer_config", j => j["Family"] = "falcon")), null,
            "agilequant.transformer_config", "found 'falcon'");
        yield return Case(new("ConfigInvalidSizes", Metadata: EditJson("agilequant.transformer_config", j => j["NumHeads"] = 5)), null,
            "agilequant.transformer_config", "multiple of the head count 5");
        yield return Case(new("ConfigWithMoreLayersThanTensors", Metadata: EditJson("agilequant.transformer_config", j => j["NumLayers"] = 3)), "blk.2.attn_q",
            "expected an entry for this linear in agilequant.linears");
        yield return Case(new("ConfigWithAbsurdLayerCount", Metadata: EditJson("agilequant.transformer_config", j => j["NumLayers"] = int.MaxValue)), null,
            "found NumLayers = 2147483647");
        yield return Case(new("ConfigWithOtherHiddenSize", Metadata: EditJson("agilequant.transformer_config", j => { j["HiddenSize"] = 96; j["NumHeads"] = 6; j["NumKvHeads"] = 3; })),
            "token_embd", "expected shape [40, 96], found [40, 64]");
        yield return Case(new("UnknownQuantizationConfig", Metadata: m => m["agilequant.quantization_config"] = "W3A5"), null,
            "expected agilequant.quantization_config to be one of FP32, W8A16", "found \"W3A5\"");
        yield return Case(new("Fp32SchemeWithQuantizedLinears", Metadata: m => m["agilequant.quantization_config"] = "FP32"), "blk.0.attn_q",
            "expected f32 weights under the scheme FP32, found int8_row");
        yield return Case(new("MissingLinearTable", Metadata: m => m.Remove("agilequant.linears")), null,
            "expected the metadata key agilequant.linears");
        yield return Case(new("RuntimeWithInvalidBits", Metadata: m => m["agilequant.runtime"] = "{\"qkv_bits\":5,\"kv_cache_bits\":8,\"log2_softmax\":false,\"low_bit_token_ratio\":0}"), null,
            "expected agilequant.runtime with qkv_bits and kv_cache_bits in {0, 4, 8}", "\"qkv_bits\":5");
        yield return Case(new("RuntimeMissingAField", Metadata: m => m["agilequant.runtime"] = "{\"qkv_bits\":8,\"kv_cache_bits\":8,\"log2_softmax\":false}"), null,
            "expected well-formed JSON in agilequant.runtime", "low_bit_token_ratio");
        yield return Case(new("UnknownLinearFormat", Metadata: EditJson("agilequant.linears", j => j["blk.0.ffn_up"]!["format"] = "int3_row")), "blk.0.ffn_up",
            "expected format f32, int8_row or int4_group, found \"int3_row\"");
        yield return Case(new("ActivationBitsOutOfRange", Metadata: EditJson("agilequant.linears", j => j["blk.1.attn_output"]!["activation_bits"] = 64)), "blk.1.attn_output",
            "expected activation_bits in 2..32, found 64");
        yield return Case(new("InconsistentGroupSize", Metadata: EditJson("agilequant.linears", j => j["blk.0.ffn_down"]!["group_size"] = 64)), "blk.0.ffn_down.scales",
            "expected shape [64, 3] (64 rows x 3 groups of 64 over 172 columns), found [64, 6]");
        yield return Case(new("UnsupportedGroupSize", Metadata: EditJson("agilequant.linears", j => j["blk.0.ffn_down"]!["group_size"] = 48)), "blk.0.ffn_down",
            "expected group_size 32, 64 or 128, found 48");
        yield return Case(new("SymmetryFlagFlipped", Metadata: EditJson("agilequant.linears", j => j["blk.0.ffn_down"]!["symmetric"] = true)), "blk.0.ffn_down.zero_points",
            "expected only the tensors", "extra one");
        yield return Case(new("StrayLinearEntry", Metadata: EditJson("agilequant.linears", j => j["blk.7.ffn_up"] = j["blk.0.ffn_up"]!.DeepClone())), "blk.7.ffn_up",
            "expected only the linears of a 2-layer llama model");
        yield return Case(new("MissingTensor", Tensor: EditTensor("blk.0.ffn_down.scales", (_, _) => null)), "blk.0.ffn_down.scales",
            "expected a F32 tensor, found none");
        yield return Case(new("ExtraTensor", Add: w => w.AddFloat32("blk.0.ffn_down.extra", [2], [1f, 2f])), "blk.0.ffn_down.extra",
            "found this extra one (F32 [2])");
        yield return Case(new("ScalesStoredAsF16", Tensor: EditTensor("blk.0.attn_k.scales", (i, d) => (SafeTensorsDType.F16, i.Shape.ToArray(), d[..(d.Length / 2)]))),
            "blk.0.attn_k.scales", "expected dtype F32, found F16");
        yield return Case(new("PackedWithWrongShape", Tensor: EditTensor("blk.1.ffn_gate.packed", (i, d) => (i.DType, [i.Shape[0] * 2, i.Shape[1] / 2], d))),
            "blk.1.ffn_gate.packed", "expected shape [172, 32], found [344, 16]");
        yield return Case(new("NaNScale", Tensor: EditTensor("blk.0.attn_q.scales", (i, d) => (i.DType, i.Shape.ToArray(), WithFloat(d, 3, float.NaN)))),
            "blk.0.attn_q.scales", "expected finite scales, found NaN at index 3");
        yield return Case(new("InfiniteGroupScale", Tensor: EditTensor("blk.0.ffn_down.scales", (i, d) => (i.DType, i.Shape.ToArray(), WithFloat(d, 5, float.PositiveInfinity)))),
            "blk.0.ffn_down.scales", "expected finite scales");
        yield return Case(new("ZeroPointAbove15", Tensor: EditTensor("blk.0.attn_v.zero_points", (i, d) => (i.DType, i.Shape.ToArray(), WithByte(d, 0, 16)))),
            "blk.0.attn_v.zero_points", "expected zero points in 0..15, found 16 at (0, 0)");
        yield return Case(new("NonZeroPaddingNibble", Tensor: EditTensor("blk.0.ffn_down.packed", (i, d) => (i.DType, i.Shape.ToArray(), WithByte(d, 95, 0xF0)))),
            "blk.0.ffn_down.packed", "non-zero nibble at (0, 191)");
        // The declared structure and values against the tensors present (issue 23): shared config value checks, no tensor carried along unread.
        yield return Case(new("ReluMlpWithGateTensors", Metadata: EditJson("agilequant.transformer_config", j => j["Mlp"] = "Relu")), "blk.0.ffn_gate",
            "expected no such linear in agilequant.linears", "Relu MLP");
        yield return Case(new("NoFinalNormWithOutputNormStored", Metadata: EditJson("agilequant.transformer_config", j => j["FinalNorm"] = false)), "output_norm.weight",
            "expected no such norm");
        yield return Case(new("NullFamily", Metadata: EditJson("agilequant.transformer_config", j => j["Family"] = null)), null,
            "expected a model family (Family), found null");
        yield return Case(new("NegativeLearnedPositionOffset", Metadata: EditJson("agilequant.transformer_config", j => j["LearnedPositionOffset"] = -5)), null,
            "LearnedPositionOffset in agilequant.transformer_config", "expected 0 for Rotary positions", "found -5");
        yield return Case(new("PositionTableOnARotaryModel", Add: w => w.AddFloat32("position_embd", [4, 64], new float[4 * 64])), "position_embd",
            "found this extra one");
        yield return Case(new("ZeroNormEpsilon", Metadata: EditJson("agilequant.transformer_config", j => j["NormEpsilon"] = 0)), null,
            "NormEpsilon in agilequant.transformer_config", "expected a finite norm epsilon in (0, 1]", "found 0");
        yield return Case(new("NegativeRotaryBase", Metadata: EditJson("agilequant.transformer_config", j => j["RotaryTheta"] = -10000)), null,
            "RotaryTheta in agilequant.transformer_config", "expected a finite RoPE base", "found -10000");
        yield return Case(new("HugeContextLength", Metadata: EditJson("agilequant.transformer_config", j => j["MaxSequenceLength"] = 1 << 28)), null,
            "MaxSequenceLength in agilequant.transformer_config", "expected a context length of at most 16777216 tokens, found 268435456");
        yield return Case(new("TiedFlagOnAQuantizedLinear", Metadata: EditJson("agilequant.linears", j => j["blk.0.attn_q"]!["tied"] = true)), "blk.0.attn_q",
            "expected \"tied\" only on an f32 lm_head");
    }

    [TestCaseSource(nameof(Cases))]
    public void RefusesCorruptCheckpoint(Corruption corruption, string? tensor, string[] message)
    {
        string path = Rewrite(corruption);
        var e = Assert.Throws<ModelFormatException>(() => QuantizedCheckpointReader.Load(path))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.TensorName, Is.EqualTo(tensor));
        foreach (string part in message) Assert.That(e.Message, Does.Contain(part));
    }

    [Test]
    public void UnchangedRewriteStillLoads()
    {
        string path = Rewrite(new Corruption("None"));
        Assert.That(QuantizedCheckpointReader.Load(path).Weights.Layers, Has.Count.EqualTo(2));
    }

    private string Rewrite(Corruption corruption)
    {
        string path = Path.Combine(_dir.FullPath, corruption.Name + ".safetensors");
        var writer = new SafeTensorsWriter();
        using (SafeTensorsFile source = SafeTensorsFile.Open(_valid))
        {
            var metadata = new Dictionary<string, string>(source.Metadata);
            corruption.Metadata?.Invoke(metadata);
            foreach (var (key, value) in metadata) writer.SetMetadata(key, value);
            foreach (SafeTensorInfo info in source.Tensors)
            {
                byte[] data = source.GetBytes(info.Name).ToArray();
                var changed = corruption.Tensor is null ? (info.DType, info.Shape.ToArray(), data) : corruption.Tensor(info, data);
                if (changed is var (dtype, shape, bytes)) writer.Add(info.Name, dtype, shape, bytes);
            }
        }
        corruption.Add?.Invoke(writer);
        writer.Write(path);
        return path;
    }

    private static byte[] WithFloat(byte[] data, int index, float value)
    {
        MemoryMarshal.Cast<byte, float>(data.AsSpan())[index] = value;
        return data;
    }

    private static byte[] WithByte(byte[] data, int index, byte value)
    {
        data[index] = value;
        return data;
    }
}
