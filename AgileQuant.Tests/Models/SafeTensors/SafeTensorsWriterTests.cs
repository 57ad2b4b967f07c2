using System.Runtime.InteropServices;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>Round trips through <see cref="SafeTensorsWriter"/> and <see cref="SafeTensorsFile"/>.</summary>
public sealed class SafeTensorsWriterTests() : TemporaryDirectoryFixture("aq-writer-")
{
    private string PathOf(string name) => Path.Combine(Temp.FullPath, name);

    [Test]
    public void EveryDtypeRoundTripsWithMetadataAndNaturalAlignment()
    {
        var random = new Random(20240601);
        float[] f32 = Enumerable.Range(0, 3 * 5).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
        sbyte[] i8 = Enumerable.Range(0, 7).Select(i => (sbyte)(i * 37 - 128)).ToArray();
        byte[] u8 = Enumerable.Range(0, 5).Select(i => (byte)(i * 51)).ToArray();
        int[] i32 = [int.MinValue, -1, 0, 1, int.MaxValue];
        var writer = new SafeTensorsWriter();
        writer.SetMetadata("format", "pt");
        writer.SetMetadata("quantization", "w4a8 \"agile\" é");
        writer.AddInt8("codes", [7], i8);
        writer.AddFloat32("half", [3, 5], f32, SafeTensorsDType.F16);
        writer.AddUInt8("packed", [5], u8);
        writer.AddFloat32("single", [3, 5], f32);
        writer.AddFloat32("brain", [15], f32, SafeTensorsDType.BF16);
        writer.AddInt32("ids", [5], i32);
        writer.Add("scalar", SafeTensorsDType.F64, [], BitConverter.GetBytes(Math.PI));
        writer.AddFloat32("empty", [0, 4], []);
        string path = PathOf("all.safetensors");
        writer.Write(path);

        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.Metadata, Is.EqualTo(writer.Metadata));
        Assert.That((8 + file.HeaderLength) % 8, Is.Zero, "data section starts at a multiple of 8");
        Assert.That(file.Tensors.Select(t => t.Name),
            Is.EqualTo(new[] { "scalar", "single", "ids", "empty", "half", "brain", "codes", "packed" }));
        foreach (SafeTensorInfo info in file.Tensors)
            Assert.That(info.DataOffset % SafeTensorsDTypes.ElementSize(info.DType), Is.Zero, info.Name);

        Assert.That(file.ReadFloat32("single"), Is.EqualTo(f32));
        Assert.That(file.Get("single").Shape, Is.EqualTo(new long[] { 3, 5 }));
        Assert.That(file.ReadFloat32("half"), Is.EqualTo(f32.Select(x => (float)(Half)x).ToArray()));
        float[] brain = file.ReadFloat32("brain");
        for (int i = 0; i < f32.Length; i++)
            Assert.That(brain[i], Is.EqualTo(f32[i]).Within(Math.Abs(f32[i]) / 256), $"brain[{i}]");
        Assert.That(MemoryMarshal.Cast<byte, sbyte>(file.GetBytes("codes")).ToArray(), Is.EqualTo(i8));
        Assert.That(file.GetBytes("packed").ToArray(), Is.EqualTo(u8));
        Assert.That(MemoryMarshal.Cast<byte, int>(file.GetBytes("ids")).ToArray(), Is.EqualTo(i32));
        Assert.That(BitConverter.ToDouble(file.GetBytes("scalar")), Is.EqualTo(Math.PI));
        Assert.That(file.Get("empty").ByteLength, Is.Zero);
    }

    [TestCase("model.f16.safetensors", SafeTensorsDType.F16)]
    [TestCase("model.bf16.safetensors", SafeTensorsDType.BF16)]
    public void ConvertingTheFloat32FixtureReproducesTheHuggingFaceRoundedFile(string roundedFile, SafeTensorsDType dtype)
    {
        // The fixture's F16/BF16 files were rounded to nearest even by the generator (numpy/torch), not by us.
        using var source = SafeTensorsFile.Open(SharedAssets.Require("fixtures/llama_tiny_gqa/model.safetensors"));
        using var reference = SafeTensorsFile.Open(SharedAssets.Require($"fixtures/llama_tiny_gqa/{roundedFile}"));
        var writer = new SafeTensorsWriter();
        foreach (var (key, value) in source.Metadata) writer.SetMetadata(key, value);
        foreach (SafeTensorInfo info in source.Tensors)
            writer.AddFloat32(info.Name, info.Shape.ToArray(), source.ReadFloat32(info.Name), dtype);
        string path = PathOf("converted.safetensors");
        writer.Write(path);

        using var converted = SafeTensorsFile.Open(path);
        Assert.That(converted.Tensors.Select(t => t.Name), Is.EqualTo(reference.Tensors.Select(t => t.Name)));
        Assert.That(converted.Metadata, Is.EqualTo(reference.Metadata));
        foreach (SafeTensorInfo info in reference.Tensors)
            Assert.That(converted.GetBytes(info.Name).SequenceEqual(reference.GetBytes(info.Name)), Is.True, info.Name);
    }

    [Test]
    public void RawBytesRoundTripAndRewritingReplacesTheFile()
    {
        using var source = SafeTensorsFile.Open(SharedAssets.Require("fixtures/bloom_tiny/model.safetensors"));
        var writer = new SafeTensorsWriter();
        foreach (SafeTensorInfo info in source.Tensors)
            writer.Add(info.Name, info.DType, info.Shape.ToArray(), source.GetBytes(info.Name).ToArray());
        string path = PathOf("copy.safetensors");
        File.WriteAllText(path, "stale content");
        writer.Write(path);

        using var copy = SafeTensorsFile.Open(path);
        Assert.That(copy.Tensors.Select(t => (t.Name, t.DType, t.ByteLength)), Is.EqualTo(source.Tensors.Select(t => (t.Name, t.DType, t.ByteLength))));
        foreach (SafeTensorInfo info in source.Tensors)
            Assert.That(copy.GetBytes(info.Name).SequenceEqual(source.GetBytes(info.Name)), Is.True, info.Name);
        Assert.That(Directory.GetFiles(Temp.FullPath), Has.Length.EqualTo(1), "no temporary file left behind");
    }

    [Test]
    public void NamesNeedingJsonEscapesRoundTrip()
    {
        string[] names = ["quote\"name", "back\\slash", "tab\tname", "ünïcödé.weight", "</script>", "\u0001"];
        var writer = new SafeTensorsWriter();
        for (int i = 0; i < names.Length; i++) writer.AddFloat32(names[i], [1], [i]);
        string path = PathOf("names.safetensors");
        writer.Write(path);

        using var file = SafeTensorsFile.Open(path);
        for (int i = 0; i < names.Length; i++) Assert.That(file.ReadFloat32(names[i]), Is.EqualTo(new float[] { i }));
    }

    [Test]
    public void BFloat16RoundingIsNearestEvenAndKeepsNaN()
    {
        float[] values = [1f, BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000),
            BitConverter.UInt32BitsToSingle(0x3F808001), BitConverter.UInt32BitsToSingle(0x7F800001),
            BitConverter.UInt32BitsToSingle(0xFFC00000), float.NegativeInfinity, -0f];
        // ties go to even (0x3F80, 0x3F82), above-tie rounds up, a signaling NaN (would round to infinity) becomes quiet.
        ushort[] expected = [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x7FC0, 0xFFC0, 0xFF80, 0x8000];
        var writer = new SafeTensorsWriter();
        writer.AddFloat32("b", [values.Length], values, SafeTensorsDType.BF16);
        string path = PathOf("bf16.safetensors");
        writer.Write(path);

        using var file = SafeTensorsFile.Open(path);
        Assert.That(MemoryMarshal.Cast<byte, ushort>(file.GetBytes("b")).ToArray(), Is.EqualTo(expected));
    }

    [Test]
    public void InvalidTensorsAreRejectedWhenAdded()
    {
        var writer = new SafeTensorsWriter();
        writer.AddFloat32("w", [2], [1, 2]);
        Assert.Throws<ArgumentException>(() => writer.AddFloat32("w", [2], [1, 2]));
        Assert.Throws<ArgumentException>(() => writer.AddFloat32("__metadata__", [1], [1]));
        Assert.Throws<ArgumentException>(() => writer.AddFloat32("x", [3], [1, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AddInt32("y", [-1], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AddUInt8("z", [long.MaxValue, 4], []));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AddFloat32("v", [1], [1], SafeTensorsDType.I8));
        Assert.Throws<ArgumentException>(() => writer.AddInt8("", [0], []));
        Assert.That(writer.Count, Is.EqualTo(1));
    }
}
