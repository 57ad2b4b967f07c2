using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the safetensors reader from a fixed seed list: every input must open (and read) or fail with a
/// <see cref="ModelFormatException"/> naming the file; any other exception or a hang fails the test.
/// </summary>
[Category("Fuzz")]
public sealed class SafeTensorsFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-", inMemory: true)
{
    private static readonly TimeSpan PerInputLimit = FuzzCampaign.PerInputLimit;

    /// <summary>Small valid files: every writer dtype, metadata, scalars, empty tensors, LLaMA-style names, an unpadded header.</summary>
    public static List<byte[]> Seeds()
    {
        var seeds = new List<byte[]>();
        var tiny = new SafeTensorsWriter();
        tiny.SetMetadata("format", "pt");
        tiny.AddFloat32("w", [2, 3], [1, -2, 3, -4, 5, -6]);
        tiny.AddFloat32("b", [3], [0.5f, 0.25f, -0.125f]);
        seeds.Add(ToBytes(tiny));

        var mixed = new SafeTensorsWriter();
        mixed.SetMetadata("format", "pt");
        mixed.SetMetadata("note", "seed");
        mixed.Add("scalar", SafeTensorsDType.F64, [], BitConverter.GetBytes(2.0));
        mixed.AddFloat32("f32", [2, 2], [1, 2, 3, 4]);
        mixed.AddInt32("i32", [3], [-1, 0, 1]);
        mixed.AddFloat32("f16", [5], [1, 2, 3, 4, 5], SafeTensorsDType.F16);
        mixed.AddFloat32("bf16", [2, 2], [1, 2, 3, 4], SafeTensorsDType.BF16);
        mixed.AddInt8("i8", [7], [-3, -2, -1, 0, 1, 2, 3]);
        mixed.AddUInt8("u8", [3], [1, 2, 3]);
        mixed.Add("bool", SafeTensorsDType.BOOL, [2], new byte[] { 0, 1 });
        mixed.AddFloat32("empty", [0, 3], [], SafeTensorsDType.F16);
        seeds.Add(ToBytes(mixed));

        var llama = new SafeTensorsWriter();
        llama.SetMetadata("format", "pt");
        llama.AddFloat32("model.embed_tokens.weight", [4, 2], new float[8]);
        for (int layer = 0; layer < 2; layer++)
        {
            foreach (string projection in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
                llama.AddFloat32($"model.layers.{layer}.self_attn.{projection}.weight", [2, 2], [layer, 1, 2, 3], SafeTensorsDType.BF16);
            foreach (string projection in new[] { "gate_proj", "up_proj", "down_proj" })
                llama.AddFloat32($"model.layers.{layer}.mlp.{projection}.weight", [3, 2], [1, 2, 3, 4, 5, 6], SafeTensorsDType.F16);
            llama.AddFloat32($"model.layers.{layer}.input_layernorm.weight", [2], [1, 1]);
        }
        llama.AddFloat32("model.norm.weight", [2], [1, 1]);
        seeds.Add(ToBytes(llama));

        // Unpadded header, so the data section starts at an odd offset.
        seeds.Add(RawSafeTensorsBytes.Build(RawSafeTensorsBytes.Header(
            RawSafeTensorsBytes.Entry("odd", "F16", [3], 0, 6), RawSafeTensorsBytes.Entry("tail", "U8", [1], 6, 7)),
            [0x00, 0x3C, 0x00, 0x40, 0x00, 0xC0, 0x07]));
        return seeds;
    }

    private static byte[] ToBytes(SafeTensorsWriter writer)
    {
        using var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    // Opens the file and reads every tensor the way a model loader would.
    private static void OpenAndReadEverything(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        foreach (SafeTensorInfo info in file.Tensors)
        {
            if (SafeTensorsDTypes.IsReadableAsFloat32(info.DType)) file.ReadFloat32(info.Name);
            else _ = file.GetBytes(info.Name).Length;
        }
        _ = file.TryGet("absent", out _);
        _ = file.Metadata.Count;
    }

    [Test]
    public void SafeTensorsReaderOnlyAcceptsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "fuzz.safetensors");
        List<byte[]> seeds = Seeds();
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 9_001, PerInputLimit);
        FuzzReport report = FuzzRunner.Run(seeds,
            [new SafeTensorsHeaderMutator(), new SafeTensorsHeaderMutator(), new ByteMutator(HeaderRegion)],
            FuzzRunner.ThroughFile(path, OpenAndReadEverything),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("safetensors", report, 40);
        Assert.That(report.InputsTried, Is.EqualTo(options.Iterations + seeds.Count));
        Assert.That(report.Rejected, Is.GreaterThan(options.Iterations / 2), "mutations should mostly break the file");
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(25), "mutations should reach many distinct checks");
    }

    [Test]
    public void SeedsAreValidAndInputsAreReproducible()
    {
        List<byte[]> seeds = Seeds();
        foreach (byte[] seed in seeds) OpenAndReadEverything(Temp.Write("seed.safetensors", seed));
        var options = new FuzzOptions(Iterations: 10, BaseSeed: 5, PerInputLimit);
        IFuzzMutator[] mutators = [new SafeTensorsHeaderMutator(), new ByteMutator()];
        for (int i = 0; i < 50; i++)
            Assert.That(FuzzRunner.MakeInput(seeds, mutators, options, i), Is.EqualTo(FuzzRunner.MakeInput(seeds, mutators, options, i)));
    }

    // The length field and JSON header: where mutations change what the reader sees.
    private static int HeaderRegion(byte[] input) =>
        input.Length < 8 ? input.Length : (int)Math.Min((ulong)input.Length, 8 + BitConverter.ToUInt64(input));
}
