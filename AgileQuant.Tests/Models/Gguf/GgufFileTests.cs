using System.Text;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.Tokenizers;

namespace AgileQuant.Tests.Models.Gguf;

public class GgufFileTests
{
    private static string VocabFile(string name) => SharedAssets.Require($"assets/tokenizers/ggml-vocab/ggml-vocab-{name}.gguf");

    [Test]
    public void GptNeoxVocab_ReadsTokenizerMetadata()
    {
        GgufFile gguf = GgufFile.Read(VocabFile("gpt-neox"));
        Assert.That(gguf.Version, Is.EqualTo(3u));
        Assert.That(gguf.Tensors, Is.Empty);
        Assert.That(gguf.GetString("tokenizer.ggml.model"), Is.EqualTo("gpt2"));
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<string> merges = gguf.GetArray<string>("tokenizer.ggml.merges");
        Assert.That(tokens.Count, Is.GreaterThan(50_000));
        Assert.That(merges.Count, Is.GreaterThan(40_000));
        Assert.That(merges[0], Does.Contain(' '));
        Assert.That(gguf.GetArray<int>("tokenizer.ggml.token_type"), Has.Count.EqualTo(tokens.Count));
        Assert.That(gguf.Keys, Has.Count.EqualTo(gguf.Metadata.Count));
        TestContext.Out.WriteLine(string.Join("\n", gguf.Keys.Select(k => $"{k}: {gguf.Metadata[k]}")));

        Microsoft.ML.Tokenizers.Tokenizer tokenizer = AgileQuant.Models.Tokenizers.GgufTokenizerLoader.Create(gguf);
        const string text = "GPT-NeoX uses a byte-level BPE: \u00e9t\u00e9 \U0001F600.";
        Assert.That(tokenizer.Decode(tokenizer.EncodeToIds(text)), Is.EqualTo(text));
    }

    [Test]
    public void LlamaSpmVocab_ReadsScoresAndTypes()
    {
        GgufFile gguf = GgufFile.Read(VocabFile("llama-spm"));
        Assert.That(gguf.GetString("tokenizer.ggml.model"), Is.EqualTo("llama"));
        IReadOnlyList<string> tokens = gguf.GetArray<string>("tokenizer.ggml.tokens");
        Assert.That(tokens, Has.Count.EqualTo(32000));
        Assert.That(tokens[29871], Is.EqualTo("\u2581"));
        Assert.That(gguf.GetArray<float>("tokenizer.ggml.scores"), Has.Count.EqualTo(32000));
        Assert.That(gguf.GetArray<int>("tokenizer.ggml.token_type")[3], Is.EqualTo(6), "<0x00> is a byte token");
        Assert.That(gguf.GetInteger("tokenizer.ggml.bos_token_id"), Is.EqualTo(1));
        var wrongType = Assert.Throws<ModelFormatException>(() => gguf.GetArray<int>("tokenizer.ggml.scores"))!;
        Assert.That(wrongType.Message, Does.Contain("tokenizer.ggml.scores").And.Contain("float32"));
        Assert.Throws<ModelFormatException>(() => gguf.GetString("no.such.key"));
    }

    [Test]
    public void SyntheticFile_ReadsEveryValueTypeAndTensorData()
    {
        using var dir = new TempDirectory();
        var writer = new GgufTestWriter();
        writer.Add("u8", 0, w => w.Write((byte)200));
        writer.Add("i8", 1, w => w.Write((sbyte)-5));
        writer.Add("u16", 2, w => w.Write((ushort)60000));
        writer.Add("i16", 3, w => w.Write((short)-30000));
        writer.Add("u32", 4, w => w.Write(4_000_000_000u));
        writer.Add("i32", 5, w => w.Write(-7));
        writer.Add("f32", 6, w => w.Write(1.5f));
        writer.Add("bool", 7, w => w.Write((byte)1));
        writer.Add("str", 8, w => GgufTestWriter.WriteString(w, "h\u00e9llo"));
        writer.Add("u64", 10, w => w.Write(ulong.MaxValue));
        writer.Add("i64", 11, w => w.Write(long.MinValue));
        writer.Add("f64", 12, w => w.Write(2.25));
        writer.Add("arr.i16", 9, w => { w.Write(3u); w.Write(2UL); w.Write((short)1); w.Write((short)-1); });
        writer.Add("arr.str", 9, w => { w.Write(8u); w.Write(2UL); GgufTestWriter.WriteString(w, "a"); GgufTestWriter.WriteString(w, ""); });
        writer.AddTensor("w", [4, 2], GgmlType.F32, 0);
        writer.AddTensor("q", [32], GgmlType.Q8_0, 32);
        byte[] data = new byte[32 + 34];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)i;
        string path = dir.Write("all.gguf", writer.Build(data));

        GgufFile gguf = GgufFile.Read(path);
        Assert.That(gguf.Metadata["u8"].Value, Is.EqualTo((byte)200));
        Assert.That(gguf.Metadata["i8"].Value, Is.EqualTo((sbyte)-5));
        Assert.That(gguf.Metadata["u16"].Value, Is.EqualTo((ushort)60000));
        Assert.That(gguf.GetInteger("i16"), Is.EqualTo(-30000));
        Assert.That(gguf.GetInteger("u32"), Is.EqualTo(4_000_000_000L));
        Assert.That(gguf.GetInteger("i32"), Is.EqualTo(-7));
        Assert.That(gguf.GetFloat("f32"), Is.EqualTo(1.5));
        Assert.That(gguf.GetBoolean("bool", false), Is.True);
        Assert.That(gguf.GetBoolean("absent", true), Is.True);
        Assert.That(gguf.GetString("str"), Is.EqualTo("h\u00e9llo"));
        Assert.Throws<ModelFormatException>(() => gguf.GetInteger("u64"), "uint64 above long.MaxValue");
        Assert.That(gguf.GetInteger("i64"), Is.EqualTo(long.MinValue));
        Assert.That(gguf.GetFloat("f64"), Is.EqualTo(2.25));
        Assert.That(gguf.GetArray<short>("arr.i16"), Is.EqualTo(new short[] { 1, -1 }));
        Assert.That(gguf.GetArray<string>("arr.str"), Is.EqualTo(new[] { "a", "" }));
        Assert.That(gguf.Keys[0], Is.EqualTo("u8"));

        Assert.That(gguf.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "w", "q" }));
        GgufTensorInfo w = gguf.FindTensor("w")!, q = gguf.FindTensor("q")!;
        Assert.That((w.ElementCount, w.ByteSize, w.Shape), Is.EqualTo((8L, 32L, (IReadOnlyList<long>)new long[] { 4, 2 })));
        Assert.That((q.ByteSize, q.Type), Is.EqualTo((34L, GgmlType.Q8_0)));
        Assert.That(gguf.DataOffset % 32, Is.EqualTo(0));
        byte[] qData = new byte[34];
        gguf.ReadTensorData(q, qData);
        Assert.That(qData, Is.EqualTo(data.Skip(32).Take(34)));
        Assert.Throws<ArgumentException>(() => gguf.ReadTensorData(q, new byte[33]));
    }

    [Test]
    public void CorruptHeaders_ThrowModelFormatException()
    {
        using var dir = new TempDirectory();
        byte[] good = new GgufTestWriter().Add("general.name", 8, w => GgufTestWriter.WriteString(w, "x")).Build([]);
        AssertRejects(dir, "empty", [], "magic");
        AssertRejects(dir, "bad-magic", Patch(good, 0, w => w.Write(0x46554748u)), "magic");
        AssertRejects(dir, "version2", Patch(good, 4, w => w.Write(2u)), "version 3, found 2");
        AssertRejects(dir, "truncated", good[..^1], "general.name");
        AssertRejects(dir, "huge-kv-count", Patch(good, 16, w => w.Write(1UL << 40)), "metadata count");
        AssertRejects(dir, "kv-count-past-end", Patch(good, 16, w => w.Write(1000UL)), "metadata count");
        AssertRejects(dir, "huge-tensor-count", Patch(good, 8, w => w.Write(ulong.MaxValue)), "tensor count");
        // The key string starts at 24: length field 24..31; the value type at 44; the value string length at 48.
        AssertRejects(dir, "key-past-end", Patch(good, 24, w => w.Write(1000UL)), "past end");
        AssertRejects(dir, "string-past-end", Patch(good, 48, w => w.Write(100UL)), "past end");
        AssertRejects(dir, "string-huge", Patch(good, 48, w => w.Write(ulong.MaxValue)), "at most");
        AssertRejects(dir, "unknown-type", Patch(good, 44, w => w.Write(13u)), "value type");

        AssertRejects(dir, "huge-array", new GgufTestWriter().Add("a", 9, w => { w.Write(4u); w.Write(1UL << 40); }).Build([]), "array count");
        AssertRejects(dir, "array-past-end", new GgufTestWriter().Add("a", 9, w => { w.Write(8u); w.Write(1000UL); }).Build([]), "array count");
        AssertRejects(dir, "nested-array", new GgufTestWriter().Add("a", 9, w => { w.Write(9u); w.Write(1UL); }).Build([]), "nested");
        AssertRejects(dir, "bad-bool", new GgufTestWriter().Add("b", 7, w => w.Write((byte)2)).Build([]), "bool");
        AssertRejects(dir, "duplicate-key", new GgufTestWriter().Add("k", 0, w => w.Write((byte)1)).Add("k", 0, w => w.Write((byte)2)).Build([]), "duplicate");
        AssertRejects(dir, "bad-utf8", new GgufTestWriter().Add("s", 8, w => { w.Write(1UL); w.Write((byte)0xFF); }).Build([]), "UTF-8");
        AssertRejects(dir, "bad-alignment", new GgufTestWriter().Add("general.alignment", 4, w => w.Write(24u)).Build([]), "power of two");
    }

    [Test]
    public void CorruptTensorInfos_ThrowModelFormatExceptionNamingTensor()
    {
        using var dir = new TempDirectory();
        byte[] data = new byte[64];
        AssertRejects(dir, "bad-type", new GgufTestWriter().AddTensor("t", [4], (GgmlType)5, 0).Build(data), "type code 5");
        AssertRejects(dir, "misaligned", new GgufTestWriter().AddTensor("t", [4], GgmlType.F32, 4).Build(data), "multiple of 32");
        AssertRejects(dir, "past-end", new GgufTestWriter().AddTensor("t", [32], GgmlType.F32, 0).Build(data), "past the end");
        AssertRejects(dir, "huge-dims", new GgufTestWriter().AddTensor("t", [1L << 40, 1L << 40], GgmlType.F32, 0).Build(data), "element count");
        AssertRejects(dir, "zero-dim", new GgufTestWriter().AddTensor("t", [0], GgmlType.F32, 0).Build(data), "dimension 0");
        AssertRejects(dir, "five-dims", new GgufTestWriter().AddTensor("t", [1, 1, 1, 1, 1], GgmlType.F32, 0).Build(data), "dimensions");
        AssertRejects(dir, "block-size", new GgufTestWriter().AddTensor("t", [16], GgmlType.Q4_0, 0).Build(data), "block size");
        AssertRejects(dir, "overlap", new GgufTestWriter().AddTensor("a", [16], GgmlType.F32, 0).AddTensor("b", [4], GgmlType.F32, 32).Build(data), "overlap");
        AssertRejects(dir, "duplicate", new GgufTestWriter().AddTensor("a", [4], GgmlType.F32, 0).AddTensor("a", [4], GgmlType.F32, 32).Build(data), "unique");
        AssertRejects(dir, "long-name", new GgufTestWriter().AddTensor(new string('n', 64), [4], GgmlType.F32, 0).Build(data), "at most 63");
    }

    [Test]
    public void TruncatedOrMutatedRealVocab_OnlyEverThrowsModelFormatException()
    {
        byte[] original = File.ReadAllBytes(VocabFile("gpt-neox"));
        using var dir = new TempDirectory();
        foreach (int cut in new[] { 0, 3, 4, 7, 8, 15, 23, 24, 40, 1000, original.Length / 2, original.Length - 100 })
            AssertRejects(dir, $"cut{cut}", original[..cut], "");

        var random = new Random(1234);
        for (int trial = 0; trial < 40; trial++)
        {
            byte[] mutated = (byte[])original.Clone();
            // Flip bytes inside the first 4 KiB, where the counts, lengths and types are.
            for (int flips = 0; flips < 3; flips++) mutated[random.Next(4096)] ^= (byte)(1 << random.Next(8));
            string path = dir.Write($"mutated{trial}.gguf", mutated);
            try { GgufFile.Read(path); }
            catch (ModelFormatException e) { Assert.That(e.FilePath, Is.EqualTo(path)); }
        }
    }

    private static void AssertRejects(TempDirectory dir, string name, byte[] content, string expectedFragment)
    {
        string path = dir.Write(name + ".gguf", content);
        var error = Assert.Throws<ModelFormatException>(() => GgufFile.Read(path), name)!;
        Assert.That(error.Message, Does.Contain(path).And.Contain(expectedFragment), name);
    }

    private static byte[] Patch(byte[] file, int offset, Action<BinaryWriter> write)
    {
        byte[] copy = (byte[])file.Clone();
        using var stream = new MemoryStream(copy);
        using var writer = new BinaryWriter(stream);
        stream.Position = offset;
        write(writer);
        return copy;
    }
}

/// <summary>Builds GGUF v3 files for tests: metadata written by callbacks, tensor infos, aligned data.</summary>
internal sealed class GgufTestWriter
{
    private readonly List<(string Key, uint Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<(string Name, long[] Shape, GgmlType Type, ulong Offset)> _tensors = [];

    public GgufTestWriter Add(string key, uint type, Action<BinaryWriter> writeValue)
    {
        _metadata.Add((key, type, writeValue));
        return this;
    }

    public GgufTestWriter AddTensor(string name, long[] shape, GgmlType type, ulong offset)
    {
        _tensors.Add((name, shape, type, offset));
        return this;
    }

    public static void WriteString(BinaryWriter writer, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    public byte[] Build(byte[] tensorData)
    {
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write(0x46554747u);
        writer.Write(3u);
        writer.Write((ulong)_tensors.Count);
        writer.Write((ulong)_metadata.Count);
        foreach ((string key, uint type, Action<BinaryWriter> write) in _metadata)
        {
            WriteString(writer, key);
            writer.Write(type);
            write(writer);
        }
        foreach ((string name, long[] shape, GgmlType type, ulong offset) in _tensors)
        {
            WriteString(writer, name);
            writer.Write((uint)shape.Length);
            foreach (long dim in shape) writer.Write((ulong)dim);
            writer.Write((uint)type);
            writer.Write(offset);
        }
        if (_tensors.Count > 0)
        {
            while (stream.Length % 32 != 0) writer.Write((byte)0);
            writer.Write(tensorData);
        }
        writer.Flush();
        return stream.ToArray();
    }
}
