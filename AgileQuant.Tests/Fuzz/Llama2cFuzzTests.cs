using System.Buffers.Binary;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the llama2.c readers (checkpoint <c>.bin</c> and <c>tokenizer.bin</c>) from small valid seeds: every input
/// must load (and then run one token, or encode and decode text) or fail with a <see cref="ModelFormatException"/>.
/// </summary>
[Category("Fuzz")]
public sealed class Llama2cFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-l2c-", inMemory: true)
{
    private static readonly string[] Merges = [" ", "a", "b", "ab", " ab", "é", "🙂", "h", "e", "he", "l", "hel", "lo", "hello", " hello", "\u00e9t\u00e9"];

    /// <summary>Writes a llama2.c checkpoint with the given header and seeded random weights.</summary>
    public static byte[] Checkpoint(int dim, int hidden, int layers, int heads, int kvHeads, int vocab, int seq, int seed)
    {
        ReadOnlySpan<int> header = [dim, hidden, layers, heads, kvHeads, vocab, seq];
        long bytes = (long)Llama2cCheckpointMutator.DescribedBytes(header)!;
        var file = new byte[bytes];
        for (int i = 0; i < 7; i++) BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(i * 4), header[i]);
        var random = new Random(seed);
        for (int at = 28; at < file.Length; at += 4) BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(at), (float)(random.NextDouble() - 0.5));
        return file;
    }

    /// <summary>Seeds: GQA with a shared classifier, a separate classifier, and a one-head model.</summary>
    public static List<byte[]> CheckpointSeeds() =>
    [
        Checkpoint(dim: 8, hidden: 12, layers: 2, heads: 2, kvHeads: 1, vocab: 16, seq: 8, seed: 1),
        Checkpoint(dim: 8, hidden: 8, layers: 1, heads: 2, kvHeads: 2, vocab: -12, seq: 4, seed: 2),
        Checkpoint(dim: 4, hidden: 4, layers: 1, heads: 1, kvHeads: 1, vocab: 8, seq: 2, seed: 3),
    ];

    [Test]
    public void CheckpointReaderOnlyLoadsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "model.bin");
        List<byte[]> seeds = CheckpointSeeds();
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 2_600, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run(seeds,
            [new Llama2cCheckpointMutator(), new Llama2cCheckpointMutator(), new ByteMutator(_ => 28)],
            FuzzRunner.ThroughFile(path, LoadAndRunOneToken),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("llama2.c checkpoint", report);
        Assert.That(report.Accepted, Is.GreaterThan(options.Iterations / 50), "consistent header lies should load");
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(10));
    }

    private static void LoadAndRunOneToken(string path)
    {
        TransformerWeights weights = Llama2cCheckpoint.Load(path);
        var model = new TransformerModel(weights, TestKernels.Default);
        float[] logits = model.CreateContext().Forward([weights.Config.VocabSize - 1]);
        Assert.That(logits, Has.Length.EqualTo(weights.Config.VocabSize));
    }

    [Test]
    public void TokenizerReaderOnlyLoadsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "tokenizer.bin");
        byte[] seed = Llama2cTokenizerMutator.Build(Merges);
        int seedVocab = 259 + Merges.Length;
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 4_100, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run([seed, Llama2cTokenizerMutator.Build()],
            [new Llama2cTokenizerMutator(), new Llama2cTokenizerMutator(), new ByteMutator(_ => 64)],
            FuzzRunner.ThroughFile(path, p =>
            {
                // Half the inputs through the count-checking overload, as ModelLoader uses it.
                Llama2cTokenizer tokenizer = (p.Length + File.ReadAllBytes(p).Length) % 2 == 0
                    ? Llama2cTokenizer.Load(p, seedVocab) : Llama2cTokenizer.Load(p);
                IReadOnlyList<int> ids = tokenizer.EncodeToIds("hello wörld été 🙂 <0x41> ab\u00e9\0");
                _ = tokenizer.Decode(ids);
                _ = tokenizer.Decode(Enumerable.Range(0, tokenizer.VocabSize));
            }),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("llama2.c tokenizer.bin", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(6));
    }

    [Test]
    public void SeedsLoad()
    {
        foreach (byte[] seed in CheckpointSeeds()) LoadAndRunOneToken(Temp.Write("seed.bin", seed));
        Assert.That(Llama2cTokenizer.Load(Temp.Write("tok.bin", Llama2cTokenizerMutator.Build(Merges))).VocabSize, Is.EqualTo(259 + Merges.Length));
    }
}
