using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;
using static AgileQuant.Tests.Models.SafeTensors.RawSafeTensorsBytes;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>
/// Malformed safetensors files built byte by byte: each must fail with <see cref="ModelFormatException"/>
/// whose message names the file, the tensor concerned (when there is one) and what was expected.
/// </summary>
public sealed class SafeTensorsCorruptInputTests() : TemporaryDirectoryFixture("aq-safetensors-")
{
    /// <summary>A malformed file, the tensor its error must name (null: file-level) and a message fragment.</summary>
    public sealed record CorruptCase(string Label, byte[] Bytes, string? Tensor, string Fragment)
    {
        /// <inheritdoc/>
        public override string ToString() => Label;
    }

    private static readonly byte[] EightFloats = Float32Bytes(1, 2, 3, 4, 5, 6, 7, 8);

    private static IEnumerable<CorruptCase> Cases()
    {
        yield return new("empty file", [], null, "expected at least 8 bytes");
        yield return new("truncated length field", [1, 0, 0], null, "found 3");
        yield return new("header length beyond file",
            Build(Header(Entry("w", "F32", [2], 0, 8))[..10], [], headerLengthField: 500), null, "expected a header length of at most");
        yield return new("header length above the cap",
            Build("{}", [], headerLengthField: 200_000_000), null, "at most 100000000");
        yield return new("header length 2^64-1",
            Build("{}", [], headerLengthField: ulong.MaxValue), null, "at most 100000000");
        yield return new("end offset beyond data section",
            Build(Header(Entry("w", "F32", [4], 0, 16), Entry("far", "F32", [4], 16, 48)), EightFloats), "far", "within the data section of 32 bytes");
        yield return new("overlapping tensors",
            Build(Header(Entry("a", "F32", [4], 0, 16), Entry("b", "F32", [4], 12, 28), Entry("c", "F32", [1], 28, 32)), EightFloats),
            "b", "overlaps 'a'");
        yield return new("hole between tensors",
            Build(Header(Entry("a", "F32", [2], 0, 8), Entry("b", "F32", [4], 16, 32)), EightFloats), "b", "hole of 8 bytes");
        yield return new("unclaimed bytes after last tensor",
            Build(Header(Entry("a", "F32", [4], 0, 16)), EightFloats), "a", "16 unclaimed bytes");
        yield return new("unknown dtype",
            Build(Header(Entry("q", "F12", [8], 0, 32)), EightFloats), "q", "unknown dtype 'F12'");
        yield return new("numeric dtype string",
            Build(Header(Entry("q", "3", [8], 0, 32)), EightFloats), "q", "unknown dtype '3'");
        yield return new("shape does not match byte size",
            Build(Header(Entry("m", "F32", [3, 3], 0, 32)), EightFloats), "m", "expected 36 bytes");
        yield return new("negative dimension",
            Build(Header(Entry("n", "F32", [-8], 0, 32)), EightFloats), "n", "non-negative");
        yield return new("element count overflows 64 bits",
            Build(Header(Entry("o", "F32", [4294967296, 4294967296], 0, 32)), EightFloats), "o", "fits in 64 bits");
        yield return new("byte size overflows 64 bits",
            Build(Header(Entry("o", "F64", [2305843009213693952], 0, 32)), EightFloats), "o", "fits in 64 bits");
        yield return new("dimension beyond 64 bits",
            Build("{\"o\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,32]}}", EightFloats), "o", "99999999999999999999");
        yield return new("fractional dimension",
            Build(Header(Entry("f", "F32", [8], 0, 32).Replace("[8]", "[8.5]")), EightFloats), "f", "8.5");
        yield return new("begin after end",
            Build(Header(Entry("r", "F32", [0], 32, 0)), EightFloats), "r", "begin <= end");
        yield return new("three data offsets",
            Build("{\"t\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,16,32]}}", EightFloats), "t", "[begin, end]");
        yield return new("missing dtype",
            Build("{\"t\":{\"shape\":[8],\"data_offsets\":[0,32]}}", EightFloats), "t", "'dtype' field");
        yield return new("missing data_offsets",
            Build("{\"t\":{\"dtype\":\"F32\",\"shape\":[8]}}", EightFloats), "t", "'data_offsets' field");
        yield return new("entry is not an object",
            Build("{\"t\":[1,2]}", EightFloats), "t", "expected an object");
        yield return new("bad JSON",
            Build("{\"t\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]", EightFloats), "t", "invalid JSON");
        yield return new("trailing garbage after header",
            Build(Header(Entry("t", "F32", [8], 0, 32)) + "xx", EightFloats), null, "invalid JSON");
        yield return new("header is an array", Build("[1]", []), null, "start with '{'");
        yield return new("duplicate tensor name",
            Build(Header(Entry("d", "F32", [4], 0, 16), Entry("d", "F32", [4], 16, 32)), EightFloats), "d", "duplicate key");
        yield return new("duplicate key inside entry",
            Build("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,32]}}", EightFloats), "t", "duplicate");
        yield return new("invalid UTF-8 in header",
            Build([.. "{\""u8, 0xFF, 0xFE, .. "\":1}"u8], []), null, "valid UTF-8");
        yield return new("metadata value not a string",
            Build("{\"__metadata__\":{\"format\":1}," + Entry("t", "F32", [8], 0, 32) + "}", EightFloats), "__metadata__", "string value");
        yield return new("nesting too deep",
            Build("{\"t\":{\"x\":" + new string('[', 40) + new string(']', 40) + "}}", EightFloats), "t", "invalid JSON");
    }

    [TestCaseSource(nameof(Cases))]
    public void MalformedFileIsRefusedWithFileAndTensorNamed(CorruptCase corrupt)
    {
        string path = Temp.Write("bad.safetensors", corrupt.Bytes);

        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path).Dispose())!;

        Assert.That(error.FilePath, Is.EqualTo(path));
        Assert.That(error.Message, Does.Contain(path));
        Assert.That(error.Message, Does.Contain(corrupt.Fragment));
        Assert.That(error.Message, Does.Contain("expected"));
        Assert.That(error.TensorName, Is.EqualTo(corrupt.Tensor));
        if (corrupt.Tensor is not null) Assert.That(error.Message, Does.Contain($"'{corrupt.Tensor}'"));
    }

    [Test]
    public void MissingTensorLookupNamesFileAndTensor()
    {
        string path = Temp.Write("ok.safetensors", Build(Header(Entry("present", "F32", [8], 0, 32)), EightFloats));
        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.TryGet("absent", out _), Is.False);
        var error = Assert.Throws<ModelFormatException>(() => file.Get("absent"))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("'absent'"));
        Assert.That(Assert.Throws<ModelFormatException>(() => file.ReadFloat32("absent"))!.TensorName, Is.EqualTo("absent"));
    }

    [Test]
    public void ReadingAnIntegerTensorAsFloatIsRefused()
    {
        string path = Temp.Write("int.safetensors", Build(Header(Entry("codes", "I8", [8], 0, 8)), new byte[8]));
        using var file = SafeTensorsFile.Open(path);

        var error = Assert.Throws<ModelFormatException>(() => file.ReadFloat32("codes"))!;
        Assert.That(error.Message, Does.Contain(path).And.Contain("'codes'").And.Contain("found I8"));
        Assert.That(file.GetBytes("codes").Length, Is.EqualTo(8));
    }

    [Test]
    public void ValidEdgeCasesAreAccepted()
    {
        // Scalar (shape []), zero-size tensor sharing an offset, header padded with spaces, metadata null.
        string header = "{\"__metadata__\":null," + Entry("empty", "F16", [0, 5], 0, 0) + "," + Entry("scalar", "F32", [], 0, 4) + "}   ";
        string path = Temp.Write("edge.safetensors", Build(header, Float32Bytes(2.5f)));
        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "empty", "scalar" }));
        Assert.That(file.ReadFloat32("scalar"), Is.EqualTo(new[] { 2.5f }));
        Assert.That(file.ReadFloat32("empty"), Is.Empty);
        Assert.That(file.Get("scalar").Rank, Is.Zero);
        Assert.That(file.Metadata, Is.Empty);
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.GetBytes("scalar"));
    }

    [Test]
    public void Float16AndBFloat16AreWidenedExactly()
    {
        // 1.5 = F16 0x3E00 = BF16 0x3FC0; -2 = F16 0xC000 = BF16 0xC000; 17 unaligned elements exercise the vector tail.
        byte[] data = new byte[2 + 17 * 2 + 17 * 2];
        BitConverter.TryWriteBytes(data.AsSpan(0), (ushort)0x3E00);
        for (int i = 0; i < 17; i++) BitConverter.TryWriteBytes(data.AsSpan(2 + 2 * i), (ushort)(i % 2 == 0 ? 0x3FC0 : 0xC000));
        for (int i = 0; i < 17; i++) BitConverter.TryWriteBytes(data.AsSpan(36 + 2 * i), (ushort)(i % 2 == 0 ? 0x3E00 : 0xC000));
        string path = Temp.Write("half.safetensors", Build(Header(
            Entry("h", "F16", [], 0, 2), Entry("b", "BF16", [17], 2, 36), Entry("h17", "F16", [17], 36, 70)), data));
        using var file = SafeTensorsFile.Open(path);

        float[] expected = Enumerable.Range(0, 17).Select(i => i % 2 == 0 ? 1.5f : -2f).ToArray();
        Assert.That(file.ReadFloat32("h"), Is.EqualTo(new[] { 1.5f }));
        Assert.That(file.ReadFloat32("b"), Is.EqualTo(expected));
        Assert.That(file.ReadFloat32("h17"), Is.EqualTo(expected));
    }

}
