using AgileQuant.Core;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Fuzz;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>The prompt, context and generated-token limits, each refused with a clear message (a model with an 8-token context).</summary>
[TestFixture]
public sealed class ResourceLimitTests() : TemporaryDirectoryFixture("aq-limits-")
{
    private TransformerModel _model = null!;
    private TextGenerator _generator = null!;

    [SetUp]
    public void LoadModel()
    {
        _model = new TransformerModel(Llama2cCheckpoint.Load(Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0])), TestKernels.Default);
        _generator = new TextGenerator(_model, Llama2cTokenizer.Load(Temp.Write("tok.bin", Llama2cTokenizerMutator.Build())));
    }

    private async Task<(List<int> Tokens, FinishReason? Finish)> Run(IReadOnlyList<int> prompt, GenerationOptions options)
    {
        var tokens = new List<int>();
        FinishReason? finish = null;
        await foreach (GenerationUpdate update in _generator.GenerateAsync(prompt, options with { StopAtEndOfSequence = false }))
        {
            if (update.TokenId >= 0) tokens.Add(update.TokenId);
            finish = update.Finish ?? finish;
        }
        return (tokens, finish);
    }

    [Test]
    public void ForwardRefusesOverflowingTheContextAndIdsOutsideTheVocabulary()
    {
        InferenceContext context = _model.CreateContext();
        context.Forward([1, 2, 3, 4, 5, 6]);
        var e = Assert.Throws<AgileQuantException>(() => context.Forward([1, 2, 3]))!;
        Assert.That(e.Message, Does.Contain("9 tokens (6 cached + 3 new)").And.Contain("context length is 8"));
        Assert.That(context.Length, Is.EqualTo(6), "a refused call leaves the cache as it was");
        Assert.That(Assert.Throws<AgileQuantException>(() => context.Forward([16]))!.Message, Does.Contain("outside the vocabulary [0, 16)"));
        Assert.That(Assert.Throws<AgileQuantException>(() => context.Forward([-1]))!.Message, Does.Contain("outside the vocabulary"));
        Assert.That(context.Forward([3, 4]), Has.Length.EqualTo(16), "the context is still usable up to its limit");
    }

    [Test]
    public void GenerationRefusesPromptsThatLeaveNoRoomAndNegativeTokenLimits()
    {
        Assert.ThrowsAsync<AgileQuantException>(() => Run([1, 2, 3, 4, 5, 6, 7, 8], new GenerationOptions()));
        Assert.ThrowsAsync<AgileQuantException>(() => Run([], new GenerationOptions()));
        Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Run([1], new GenerationOptions { MaxTokens = -1 }));
    }

    [Test]
    public async Task GenerationStopsAtTheTokenLimitOrAtAFullContext()
    {
        (List<int> tokens, FinishReason? finish) = await Run([1, 5], new GenerationOptions { MaxTokens = 3 });
        Assert.That((tokens.Count, finish), Is.EqualTo((3, (FinishReason?)FinishReason.MaxTokens)));
        (tokens, finish) = await Run([1, 5], new GenerationOptions { MaxTokens = 0 });
        Assert.That((tokens.Count, finish), Is.EqualTo((0, (FinishReason?)FinishReason.MaxTokens)));
        // 2 prompt tokens + 6 generated fill the 8 positions; the 7th sampled token still comes out with ContextFull.
        (tokens, finish) = await Run([1, 5], new GenerationOptions { MaxTokens = 100 });
        Assert.That(finish, Is.EqualTo(FinishReason.ContextFull));
        Assert.That(tokens, Has.Count.EqualTo(7));
    }
}
