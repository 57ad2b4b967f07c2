using AgileQuant.Core;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Fuzz;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>NaN and infinity reaching the logits at run time are reported, never turned into tokens or a perplexity.</summary>
[TestFixture]
public sealed class NumericalFaultTests() : TemporaryDirectoryFixture("aq-numeric-")
{
    private static readonly float[] Finite = [0.5f, 2f, -1f, 1.5f];

    [TestCase(float.NaN, "NaN logit at token 2")]
    [TestCase(float.PositiveInfinity, "+infinite logit at token 2")]
    public void SamplerRefusesNaNAndPositiveInfinity(float bad, string expected)
    {
        float[] logits = [.. Finite];
        logits[2] = bad;
        foreach (SamplingOptions options in new[] { SamplingOptions.Greedy, new SamplingOptions { Temperature = 1f, Seed = 3 } })
        {
            var e = Assert.Throws<AgileQuantException>(() => new TokenSampler(options).Sample(logits))!;
            Assert.That(e.Message, Does.Contain(expected));
        }
    }

    [Test]
    public void SamplerTreatsNegativeInfinityAsNeverButRefusesAllOfThem()
    {
        float[] masked = [float.NegativeInfinity, 0.25f, float.NegativeInfinity, 0.5f];
        Assert.That(new TokenSampler(SamplingOptions.Greedy).Sample(masked), Is.EqualTo(3));
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1f, Seed = 9 });
        for (int i = 0; i < 200; i++) Assert.That(sampler.Sample(masked), Is.EqualTo(1).Or.EqualTo(3));
        float[] none = [float.NegativeInfinity, float.NegativeInfinity];
        Assert.Throws<AgileQuantException>(() => new TokenSampler(SamplingOptions.Greedy).Sample(none));
        Assert.Throws<AgileQuantException>(() => new TokenSampler(new SamplingOptions { Temperature = 0.7f }).Sample(none));
    }

    // The synthetic llama2.c model with one NaN planted in layer 0's query weight (the load-time check bypassed).
    private TransformerModel ModelWithNaNWeight()
    {
        TransformerWeights weights = Llama2cCheckpoint.Load(Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0]));
        ((Fp32Matrix)weights.Layers[0].Query.Weight).Data[5] = float.NaN;
        return new TransformerModel(weights, TestKernels.Default);
    }

    [Test]
    public void GenerationWithNaNActivationsFailsInsteadOfEmittingTokens()
    {
        TransformerModel model = ModelWithNaNWeight();
        var generator = new TextGenerator(model, Llama2cTokenizer.Load(Temp.Write("tok.bin", Llama2cTokenizerMutator.Build())));
        var produced = new List<int>();
        var e = Assert.ThrowsAsync<AgileQuantException>(async () =>
        {
            await foreach (GenerationUpdate update in generator.GenerateAsync([1, 5, 7], new GenerationOptions { MaxTokens = 4 }))
                produced.Add(update.TokenId);
        })!;
        Assert.That(e.Message, Does.Contain("NaN logit"));
        Assert.That(produced, Is.Empty, "no token may come out of NaN logits");
    }

    [Test]
    public void PerplexityWithNaNActivationsFailsInsteadOfReturningANumber()
    {
        TransformerModel model = ModelWithNaNWeight();
        IReadOnlyList<int>[] documents = [[1, 4, 9, 3, 2]];
        var e = Assert.Throws<AgileQuantException>(() => PerplexityEvaluator.Evaluate(model, documents, PerplexityProtocol.Document, 8))!;
        Assert.That(e.Message, Does.Contain("NaN"));
    }
}
