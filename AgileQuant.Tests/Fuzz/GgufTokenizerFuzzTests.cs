using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes <see cref="GgufTokenizerLoader.Load"/>: GGUF vocabulary files with SentencePiece (<c>llama</c>) and byte-level
/// BPE (<c>gpt2</c>) metadata. Every input must build a tokenizer (which then encodes and decodes a fixed text) or fail
/// with a <see cref="ModelFormatException"/> naming the file.
/// </summary>
[Category("Fuzz")]
public sealed class GgufTokenizerFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-ggtok-", inMemory: true)
{
    private const uint UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9;

    private static void Strings(BinaryWriter w, IReadOnlyList<string> values)
    {
        w.Write(String);
        w.Write((ulong)values.Count);
        foreach (string value in values) GgufTestWriter.WriteString(w, value);
    }

    /// <summary>Seeds: a llama (SentencePiece) vocabulary with scores, types and special ids; a gpt2 one with merges.</summary>
    public static List<byte[]> Seeds()
    {
        string[] pieces = ["<unk>", "<s>", "</s>", "<0x20>", "<0xF0>", "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"];
        var llama = new GgufTestWriter();
        llama.Add("tokenizer.ggml.model", String, w => GgufTestWriter.WriteString(w, "llama"));
        llama.Add("tokenizer.ggml.tokens", Array, w => Strings(w, pieces));
        llama.Add("tokenizer.ggml.scores", Array, w => { w.Write(Float32); w.Write((ulong)pieces.Length); for (int i = 0; i < pieces.Length; i++) w.Write(-(float)i); });
        llama.Add("tokenizer.ggml.token_type", Array, w => { w.Write(Int32); w.Write((ulong)pieces.Length); foreach (int t in new[] { 2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1 }) w.Write(t); });
        llama.Add("tokenizer.ggml.bos_token_id", UInt32, w => w.Write(1u));
        llama.Add("tokenizer.ggml.eos_token_id", UInt32, w => w.Write(2u));
        llama.Add("tokenizer.ggml.add_bos_token", Bool, w => w.Write((byte)1));

        string[] alphabet = ByteLevelBpeFuzzTests.ByteAlphabet();
        string[] tokens = [.. alphabet, "\u0120t", "he", "\u0120the", "<|endoftext|>"];
        var gpt2 = new GgufTestWriter();
        gpt2.Add("tokenizer.ggml.model", String, w => GgufTestWriter.WriteString(w, "gpt2"));
        gpt2.Add("tokenizer.ggml.pre", String, w => GgufTestWriter.WriteString(w, "gpt-2"));
        gpt2.Add("tokenizer.ggml.tokens", Array, w => Strings(w, tokens));
        gpt2.Add("tokenizer.ggml.token_type", Array, w => { w.Write(Int32); w.Write((ulong)tokens.Length); for (int i = 0; i < tokens.Length; i++) w.Write(i == tokens.Length - 1 ? 3 : 1); });
        gpt2.Add("tokenizer.ggml.merges", Array, w => Strings(w, ["\u0120 t", "h e", "\u0120t he"]));
        gpt2.Add("tokenizer.ggml.bos_token_id", UInt32, w => w.Write((uint)tokens.Length - 1));
        gpt2.Add("tokenizer.ggml.add_bos_token", Bool, w => w.Write((byte)1));
        return [llama.Build([]), gpt2.Build([])];
    }

    private static void LoadEncodeDecode(string path)
    {
        Tokenizer tokenizer = GgufTokenizerLoader.Load(path);
        _ = tokenizer.Decode(tokenizer.EncodeToIds(SentencePieceFuzzTests.SampleText + " the <|endoftext|>"));
    }

    [Test]
    public void SeedsBuildTokenizers()
    {
        List<byte[]> seeds = Seeds();
        Tokenizer llama = GgufTokenizerLoader.Load(Temp.Write("llama.gguf", seeds[0]));
        Assert.That(llama.EncodeToIds("ab"), Is.EqualTo(new[] { 1, 10 }), "BOS then \u2581ab");
        Tokenizer gpt2 = GgufTokenizerLoader.Load(Temp.Write("gpt2.gguf", seeds[1]));
        Assert.That(gpt2.EncodeToIds(" the"), Is.EqualTo(new[] { 259, 258 }), "BOS <|endoftext|> then \u0120the");
    }

    [Test]
    public void GgufTokenizerLoaderOnlyBuildsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "vocab.gguf");
        // 10k by default: the GGUF reader itself has its own 20k campaign; this one adds the tokenizer built on top.
        var options = new FuzzOptions(FuzzCampaign.Iterations(10_000), BaseSeed: 16_000, FuzzCampaign.PerInputLimit, StackProbability: 0.4);
        // Everything but the tensor data is header here, so the byte mutator's edits all land in the metadata.
        FuzzReport report = FuzzRunner.Run(Seeds(), [new ByteMutator(), new ByteMutator()], FuzzRunner.ThroughFile(path, LoadEncodeDecode),
            e => e is ModelFormatException m && m.FilePath == path, options, message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("GGUF tokenizer (GgufTokenizerLoader, + encode/decode)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(10));
    }
}
