using AgileQuant.Core.Evaluation;
using AgileQuant.Models;

namespace AgileQuant.Tests.Models;

/// <summary>
/// stories260K perplexity on the first 1,000 TinyStories validation stories, against the figures llama2.c's
/// own forward pass gives (../shared/assets/README.md). Needs ../shared.
/// </summary>
[TestFixture]
public class Stories260KPerplexityTests
{
    private static LoadedModel Loaded() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"),
        new ModelLoadOptions());

    private static IReadOnlyList<IReadOnlyList<int>> Stories(LoadedModel loaded)
    {
        string text = File.ReadAllText(SharedAssets.Require("assets/text/tinystories/tinystories_valid_first1000.txt"));
        return TextCorpus.SplitDocuments(text, "<|endoftext|>").Select(s => (IReadOnlyList<int>)loaded.Tokenizer!.EncodeToIds(s)).ToArray();
    }

    [TestCase(PerplexityProtocol.Document, 369_992, 4.542412)]
    [TestCase(PerplexityProtocol.Stream, 389_573, 4.738295)]
    public void MatchesLlama2cReference(PerplexityProtocol protocol, long scoredTokens, double perplexity)
    {
        LoadedModel loaded = Loaded();
        IReadOnlyList<IReadOnlyList<int>> stories = Stories(loaded);
        Assert.That(stories, Has.Count.EqualTo(1000));
        PerplexityResult result = PerplexityEvaluator.Evaluate(loaded.Model, stories, protocol, 512, parallelism: Environment.ProcessorCount);
        Assert.That(result.ScoredTokens, Is.EqualTo(scoredTokens));
        Assert.That(result.Perplexity, Is.EqualTo(perplexity).Within(0.0005));
    }
}
