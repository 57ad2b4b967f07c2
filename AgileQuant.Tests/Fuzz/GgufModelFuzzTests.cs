using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes whole GGUF models (metadata, tensor infos, Q4_0/Q8_0/F16 blocks) through <see cref="ModelLoader"/>: every input
/// must load or fail with a <see cref="ModelFormatException"/> naming the file.
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
            FuzzRunner.ThroughFile(path, p => ModelLoader.Load(p, new ModelLoadOptions())),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("GGUF model", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.Rejected, Is.GreaterThan(0));
    }
}
