using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes whole GGUF models (metadata, tensor infos, Q4_0/Q8_0/F16 blocks) through <see cref="ModelLoader"/>: every input
/// must load and run one forward step, or fail with a <see cref="ModelFormatException"/> naming the file.
/// </summary>
[Category("Fuzz")]
public sealed class GgufModelFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-gguf-model-", inMemory: true)
{
    private static List<byte[]> Seeds(string directory)
    {
        TransformerWeights weights = GgufModelTests.SyntheticTinyModel(seed: 5);
        var seeds = new List<byte[]>();
        foreach (GgmlType type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.F16 })
        {
            string path = Path.Combine(directory, $"seed-{type}.gguf");
            GgufModelWriter.Write(path, weights, GgufVocabulary.Placeholder(weights.Config.VocabSize), new GgufWriteOptions { WeightType = type });
            seeds.Add(File.ReadAllBytes(path));
        }
        return seeds;
    }

    [Test]
    public void GgufModelLoaderOnlyLoadsOrRaisesModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "model.gguf");
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 7_100, FuzzCampaign.PerInputLimit, StackProbability: 0.5);
        // Header edits (first 8 KiB: counts, metadata values, tensor infos) and edits anywhere (block scales, codes, norms).
        FuzzReport report = FuzzRunner.Run(Seeds(Temp.FullPath), [new ByteMutator(input => Math.Min(input.Length, 8192)), new ByteMutator()],
            FuzzRunner.ThroughFile(path, LoadAndRunOneToken), // an accepted model must also run a forward step
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("GGUF model", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.Rejected, Is.GreaterThan(0));
    }

    [Test]
    public void GgufModelWithLyingCountsOnlyLoadsOrRaisesModelFormatException()
    {
        // Huge or contradictory declared counts (block_count 2^31 - 1, context_length 2^28, ...), stacked with header byte
        // edits: each must be refused before it sizes anything (an OutOfMemoryException is a failure), or load and run.
        string path = Path.Combine(Temp.FullPath, "model.gguf");
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 7_900, FuzzCampaign.PerInputLimit, StackProbability: 0.3);
        FuzzReport report = FuzzRunner.Run(Seeds(Temp.FullPath), [new GgufCountMutator(), new GgufCountMutator(), new ByteMutator(input => Math.Min(input.Length, 8192))],
            FuzzRunner.ThroughFile(path, LoadAndRunOneToken),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("GGUF model, lying counts", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds.Keys, Has.Some.Contains("block_count"), "lying layer counts are refused by name");
    }

    private static void LoadAndRunOneToken(string path)
    {
        using LoadedModel loaded = ModelLoader.Load(path, new ModelLoadOptions());
        loaded.Model.CreateContext().Forward([1], allLogits: false, [], []);
    }
}
