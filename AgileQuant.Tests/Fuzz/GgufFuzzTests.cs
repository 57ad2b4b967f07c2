using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the GGUF header reader from small valid files (every metadata value type, arrays, aligned F32 and Q8_0
/// tensors): every input must read (then every value and tensor is fetched) or fail with a <see cref="ModelFormatException"/>.
/// </summary>
[Category("Fuzz")]
public sealed class GgufFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-gguf-", inMemory: true)
{
    /// <summary>Seeds: all value types with two tensors, a tokenizer-like file, and an empty header.</summary>
    public static List<byte[]> Seeds()
    {
        var all = new GgufTestWriter();
        all.Add("general.architecture", 8, w => GgufTestWriter.WriteString(w, "llama"));
        all.Add("general.alignment", 4, w => w.Write(32u));
        all.Add("u8", 0, w => w.Write((byte)200)).Add("i8", 1, w => w.Write((sbyte)-5)).Add("u16", 2, w => w.Write((ushort)60000));
        all.Add("i16", 3, w => w.Write((short)-30000)).Add("i32", 5, w => w.Write(-7)).Add("f32", 6, w => w.Write(1.5f));
        all.Add("bool", 7, w => w.Write((byte)1)).Add("u64", 10, w => w.Write(ulong.MaxValue)).Add("i64", 11, w => w.Write(long.MinValue));
        all.Add("f64", 12, w => w.Write(2.25));
        all.Add("arr.i16", 9, w => { w.Write(3u); w.Write(2UL); w.Write((short)1); w.Write((short)-1); });
        all.Add("arr.str", 9, w => { w.Write(8u); w.Write(2UL); GgufTestWriter.WriteString(w, "a"); GgufTestWriter.WriteString(w, "h\u00e9"); });
        all.AddTensor("w", [4, 2], GgmlType.F32, 0);
        all.AddTensor("q", [32], GgmlType.Q8_0, 32);
        byte[] data = new byte[32 + 34];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)i;

        var vocab = new GgufTestWriter();
        vocab.Add("tokenizer.ggml.model", 8, w => GgufTestWriter.WriteString(w, "gpt2"));
        vocab.Add("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(3UL); foreach (string t in new[] { "a", "b", "ab" }) GgufTestWriter.WriteString(w, t); });
        vocab.Add("tokenizer.ggml.scores", 9, w => { w.Write(6u); w.Write(3UL); w.Write(0f); w.Write(-1f); w.Write(-2f); });
        vocab.Add("tokenizer.ggml.token_type", 9, w => { w.Write(5u); w.Write(3UL); w.Write(1); w.Write(1); w.Write(1); });
        return [all.Build(data), vocab.Build([]), new GgufTestWriter().Build([])];
    }

    private static void ReadEverything(string path)
    {
        GgufFile gguf = GgufFile.Read(path);
        foreach (string key in gguf.Keys) _ = gguf.GetValue(key).ToString();
        foreach (GgufTensorInfo tensor in gguf.Tensors)
            if (tensor.ByteSize <= 1 << 20) gguf.ReadTensorData(tensor, new byte[tensor.ByteSize]);
    }

    [Test]
    public void GgufReaderOnlyReadsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "model.gguf");
        List<byte[]> seeds = Seeds();
        foreach (byte[] seed in seeds) ReadEverything(Temp.Write("seed.gguf", seed));
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 6_400, FuzzCampaign.PerInputLimit, StackProbability: 0.5);
        // Most edits in the header (counts, lengths, types, dims, offsets), where the reader decides what to allocate.
        FuzzReport report = FuzzRunner.Run(seeds, [new ByteMutator(input => Math.Min(input.Length, 512)), new ByteMutator()],
            FuzzRunner.ThroughFile(path, ReadEverything),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("GGUF", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(15));
    }
}
