using System.Buffers.Binary;
using System.Text.Json;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>
/// Reads the Hugging Face fixtures in ../shared/fixtures: the tensor list and shapes must match each
/// fixture README, F16/BF16 files must equal the F32 values rounded to nearest-even, and the LLaMA
/// embeddings must match the hidden_states[0] that transformers recorded in reference*.json.
/// </summary>
public sealed class SafeTensorsFixtureTests
{
    private static readonly string[] Fixtures = ["llama_tiny_gqa", "opt_tiny_125m_style", "bloom_tiny"];

    private static IEnumerable<TestCaseData> RoundedFiles()
    {
        yield return new TestCaseData("llama_tiny_gqa", "model.f16.safetensors", SafeTensorsDType.F16);
        yield return new TestCaseData("llama_tiny_gqa", "model.bf16.safetensors", SafeTensorsDType.BF16);
        yield return new TestCaseData("opt_tiny_125m_style", "model.f16.safetensors", SafeTensorsDType.F16);
        yield return new TestCaseData("bloom_tiny", "model.f16.safetensors", SafeTensorsDType.F16);
    }

    // The README's "## Tensors in model.safetensors (file order)" block: "name [d0, d1]" per line.
    private static List<(string Name, long[] Shape)> ReadmeTensorList(string fixture)
    {
        string[] lines = File.ReadAllLines(SharedAssets.Require($"fixtures/{fixture}/README.md"));
        int start = Array.FindIndex(lines, l => l.StartsWith("## Tensors in model.safetensors", StringComparison.Ordinal));
        Assert.That(start, Is.GreaterThanOrEqualTo(0), "README has no tensor list");
        var list = new List<(string, long[])>();
        int fence = Array.FindIndex(lines, start, l => l.StartsWith("```", StringComparison.Ordinal));
        foreach (string line in lines.Skip(fence + 1).TakeWhile(l => !l.StartsWith("```", StringComparison.Ordinal)))
        {
            int bracket = line.IndexOf(" [", StringComparison.Ordinal);
            long[] shape = line[(bracket + 2)..^1].Split(", ").Select(long.Parse).ToArray();
            list.Add((line[..bracket], shape));
        }
        Assert.That(list, Is.Not.Empty, "README tensor list is empty");
        return list;
    }

    [TestCaseSource(nameof(Fixtures))]
    public void Float32FileMatchesReadmeTensorList(string fixture)
    {
        var expected = ReadmeTensorList(fixture);
        string path = SharedAssets.Require($"fixtures/{fixture}/model.safetensors");
        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.Tensors.Select(t => t.Name), Is.EqualTo(expected.Select(e => e.Name)));
        for (int i = 0; i < expected.Count; i++)
        {
            SafeTensorInfo info = file.Tensors[i];
            Assert.That(info.Shape, Is.EqualTo(expected[i].Shape), info.Name);
            Assert.That(info.DType, Is.EqualTo(SafeTensorsDType.F32), info.Name);
            Assert.That(info.ElementCount, Is.EqualTo(expected[i].Shape.Aggregate(1L, (a, b) => a * b)), info.Name);
            Assert.That(info.ByteLength, Is.EqualTo(info.ElementCount * 4), info.Name);
            Assert.That(file.ReadFloat32(info.Name), Has.Length.EqualTo(info.ElementCount), info.Name);
        }
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(file.Tensors[^1].DataOffset + file.Tensors[^1].ByteLength, Is.EqualTo(new FileInfo(path).Length));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void RawBytesAreTheFileBytesAtTheDataOffset(string fixture)
    {
        string path = SharedAssets.Require($"fixtures/{fixture}/model.safetensors");
        byte[] whole = File.ReadAllBytes(path);
        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.HeaderLength, Is.EqualTo((long)BinaryPrimitives.ReadUInt64LittleEndian(whole)));
        foreach (SafeTensorInfo info in file.Tensors)
        {
            byte[] expected = whole.AsSpan((int)info.DataOffset, (int)info.ByteLength).ToArray();
            Assert.That(file.GetBytes(info.Name).ToArray(), Is.EqualTo(expected), info.Name);
            float[] values = file.ReadFloat32(info.Name);
            Assert.That(values[^1], Is.EqualTo(BinaryPrimitives.ReadSingleLittleEndian(expected.AsSpan(expected.Length - 4))), info.Name);
        }
    }

    [TestCaseSource(nameof(RoundedFiles))]
    public void RoundedFileEqualsFloat32ValuesRoundedToNearestEven(string fixture, string weightsFile, SafeTensorsDType dtype)
    {
        using var f32 = SafeTensorsFile.Open(SharedAssets.Require($"fixtures/{fixture}/model.safetensors"));
        using var rounded = SafeTensorsFile.Open(SharedAssets.Require($"fixtures/{fixture}/{weightsFile}"));

        Assert.That(rounded.Tensors.Select(t => t.Name), Is.EqualTo(f32.Tensors.Select(t => t.Name)));
        // Half-precision rounding: relative error <= 2^-11 (F16) or 2^-8 (BF16); F16 subnormals add 2^-25 absolute.
        float relative = dtype == SafeTensorsDType.F16 ? 1f / 2048 : 1f / 256;
        foreach (SafeTensorInfo info in rounded.Tensors)
        {
            Assert.That(info.DType, Is.EqualTo(dtype), info.Name);
            Assert.That(info.Shape, Is.EqualTo(f32.Get(info.Name).Shape), info.Name);
            Assert.That(info.ByteLength, Is.EqualTo(info.ElementCount * 2), info.Name);
            float[] exact = f32.ReadFloat32(info.Name);
            float[] actual = rounded.ReadFloat32(info.Name);
            for (int i = 0; i < exact.Length; i++)
            {
                float expected = dtype == SafeTensorsDType.F16 ? (float)(Half)exact[i] : RoundToBFloat16(exact[i]);
                if (actual[i] != expected || Math.Abs(actual[i] - exact[i]) > relative * Math.Abs(exact[i]) + 3e-8f)
                    Assert.Fail($"{info.Name}[{i}]: f32 {exact[i]:R}, expected {expected:R}, read {actual[i]:R}");
            }
        }
    }

    [TestCase("reference.json", "model.safetensors")]
    [TestCase("reference.f16.json", "model.f16.safetensors")]
    [TestCase("reference.bf16.json", "model.bf16.safetensors")]
    public void LlamaEmbeddingRowsMatchTransformersHiddenStateZero(string referenceFile, string weightsFile)
    {
        // hidden_states.values[0][p] is model.embed_tokens(input_ids)[p], as recorded by transformers (6 significant digits).
        using JsonDocument reference = JsonDocument.Parse(File.ReadAllBytes(SharedAssets.Require($"fixtures/llama_tiny_gqa/{referenceFile}")));
        int[] inputIds = reference.RootElement.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        JsonElement rows = reference.RootElement.GetProperty("hidden_states").GetProperty("values")[0];
        int[] positions = reference.RootElement.GetProperty("hidden_states").GetProperty("positions").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        using var checkpoint = SafeTensorsCheckpoint.Open(SharedAssets.Require($"fixtures/llama_tiny_gqa/{weightsFile}"));
        float[] embeddings = checkpoint.ReadFloat32("model.embed_tokens.weight"); // (1000, 64)
        for (int k = 0; k < positions.Length; k++)
        {
            int token = inputIds[positions[k]];
            float[] expected = rows[k].EnumerateArray().Select(e => e.GetSingle()).ToArray();
            Assert.That(expected, Has.Length.EqualTo(64));
            for (int j = 0; j < 64; j++)
                Assert.That(embeddings[token * 64 + j], Is.EqualTo(expected[j]).Within(5e-6 * Math.Abs(expected[j]) + 1e-7),
                    $"position {positions[k]} token {token} column {j}");
        }
    }

    [Test]
    public void DirectoryCheckpointOpensModelSafetensorsAndVariants()
    {
        string directory = SharedAssets.Require("fixtures/llama_tiny_gqa");
        using var plain = SafeTensorsCheckpoint.Open(directory);
        using var bf16 = SafeTensorsCheckpoint.Open(directory, "bf16");
        Assert.That(Path.GetFileName(plain.FilePathOf("model.norm.weight")), Is.EqualTo("model.safetensors"));
        Assert.That(Path.GetFileName(bf16.FilePathOf("model.norm.weight")), Is.EqualTo("model.bf16.safetensors"));
        Assert.That(plain.Tensors, Has.Count.EqualTo(30));
        Assert.That(bf16.Get("lm_head.weight").DType, Is.EqualTo(SafeTensorsDType.BF16));
    }

    // Round-to-nearest-even of float32 to bfloat16, upcast back (finite inputs).
    private static float RoundToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(rounded);
    }
}
