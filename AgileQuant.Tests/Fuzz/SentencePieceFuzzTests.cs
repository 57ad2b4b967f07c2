using System.Text;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the SentencePiece <c>tokenizer.model</c> readers: our protobuf reader behind
/// <see cref="SpmVocabularyTokenizer.LoadSentencePieceModel"/> and Microsoft.ML.Tokenizers' parser behind
/// <see cref="HfLlamaTokenizerLoader.LoadModelFile"/>. Every input must load (then a fixed text is encoded and
/// decoded) or fail with a <see cref="ModelFormatException"/> naming the file.
/// </summary>
[Category("Fuzz")]
public sealed class SentencePieceFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-spm-", inMemory: true)
{
    /// <summary>Encoded and decoded by every tokenizer that loads: ASCII, spaces, a missing character, an emoji, control text.</summary>
    public const string SampleText = " ab a\u2581b  xyz \uD83D\uDE01 <s></s> \t\n";

    /// <summary>A ModelProto: pieces (piece, score, type), trainer_spec (model type, unk/bos/eos ids), normalizer_spec.</summary>
    public static byte[] ModelProto(IEnumerable<(string Piece, float Score, int Type)> pieces, int modelType, bool byteFallback,
        string normalizer = "identity", bool addDummyPrefix = true)
    {
        var model = new List<byte>();
        foreach ((string piece, float score, int type) in pieces)
        {
            var message = new List<byte>();
            LengthDelimited(message, 1, Encoding.UTF8.GetBytes(piece));
            message.Add((2 << 3) | 5);
            message.AddRange(BitConverter.GetBytes(score));
            VarintField(message, 3, (ulong)type);
            LengthDelimited(model, 1, [.. message]);
        }
        var trainer = new List<byte>();
        VarintField(trainer, 3, (ulong)modelType);
        VarintField(trainer, 35, byteFallback ? 1UL : 0);
        VarintField(trainer, 40, 0);
        VarintField(trainer, 41, 1);
        VarintField(trainer, 42, 2);
        LengthDelimited(model, 2, [.. trainer]);
        var normalizerSpec = new List<byte>();
        LengthDelimited(normalizerSpec, 1, Encoding.UTF8.GetBytes(normalizer));
        VarintField(normalizerSpec, 3, addDummyPrefix ? 1UL : 0);
        VarintField(normalizerSpec, 4, 0);
        VarintField(normalizerSpec, 5, 1);
        LengthDelimited(model, 3, [.. normalizerSpec]);
        return [.. model];
    }

    private static void VarintField(List<byte> output, int number, ulong value)
    {
        output.AddRange(ProtobufFieldMutator.Varint((ulong)number << 3));
        output.AddRange(ProtobufFieldMutator.Varint(value));
    }

    private static void LengthDelimited(List<byte> output, int number, byte[] payload)
    {
        output.AddRange(ProtobufFieldMutator.Varint(((ulong)number << 3) | 2));
        output.AddRange(ProtobufFieldMutator.Varint((ulong)payload.Length));
        output.AddRange(payload);
    }

    /// <summary>Seeds: a byte-fallback BPE vocabulary (control, byte and normal pieces), one without byte tokens, and a unigram model.</summary>
    public static List<byte[]> Seeds()
    {
        var pieces = new List<(string, float, int)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        foreach (int b in new[] { 0x09, 0x0A, 0x20, 0x61, 0x62, 0xE2, 0x96, 0x81, 0xF0, 0x9F, 0x98 })
            pieces.Add(($"<0x{b:X2}>", 0, 6));
        string[] normal = ["\u2581", "a", "b", "x", "y", "z", "\u2581a", "ab", "\u2581ab", "\u2581b", "xy", "xyz"];
        for (int i = 0; i < normal.Length; i++) pieces.Add((normal[i], -i, 1));
        return
        [
            ModelProto(pieces, modelType: 2, byteFallback: true),
            ModelProto(pieces.Where(p => p.Item3 != 6), modelType: 2, byteFallback: false, addDummyPrefix: false),
            ModelProto(pieces.Take(6), modelType: 1, byteFallback: true, normalizer: "nmt_nfkc"),
        ];
    }

    private static void EncodeAndDecode(Tokenizer tokenizer)
    {
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(SampleText);
        _ = tokenizer.Decode(ids);
        _ = tokenizer.CountTokens(SampleText);
    }

    private FuzzReport Fuzz(int baseSeed, Action<string> load)
    {
        string path = Path.Combine(Temp.FullPath, "tokenizer.model");
        var options = new FuzzOptions(FuzzCampaign.Iterations(), baseSeed, FuzzCampaign.PerInputLimit, StackProbability: 0.4);
        return FuzzRunner.Run(Seeds(), [new ProtobufFieldMutator(), new ProtobufFieldMutator(), new ByteMutator()],
            FuzzRunner.ThroughFile(path, load), e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
    }

    [Test]
    public void SeedsLoadAndEncode()
    {
        List<byte[]> seeds = Seeds();
        SpmVocabularyTokenizer tokenizer = SpmVocabularyTokenizer.LoadSentencePieceModel(Temp.Write("seed.model", seeds[0]));
        Assert.That(tokenizer.Decode(tokenizer.EncodeToIds(" ab xyz")), Is.EqualTo(" ab xyz"));
        Assert.That(tokenizer.EncodeToIds("\uD83D\uDE01").Count, Is.GreaterThan(1), "an emoji falls back to byte tokens");
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.LoadSentencePieceModel(Temp.Write("unigram.model", seeds[2])));
    }

    [Test]
    public void SpmVocabularyTokenizerOnlyLoadsOrRaisesModelFormatException()
    {
        FuzzReport report = Fuzz(8_100, path => EncodeAndDecode(SpmVocabularyTokenizer.LoadSentencePieceModel(path)));
        FuzzCampaign.Check("SentencePiece tokenizer.model (SpmVocabularyTokenizer)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(12));
    }

    [Test]
    public void HfLlamaTokenizerLoaderOnlyLoadsOrRaisesModelFormatException()
    {
        FuzzReport report = Fuzz(9_300, path => EncodeAndDecode(HfLlamaTokenizerLoader.LoadModelFile(path)));
        FuzzCampaign.Check("SentencePiece tokenizer.model (HfLlamaTokenizerLoader, Microsoft.ML.Tokenizers)", report);
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(5));
    }
}
