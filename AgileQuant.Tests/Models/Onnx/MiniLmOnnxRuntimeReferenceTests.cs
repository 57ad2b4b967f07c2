using AgileQuant.Core.Encoder;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Embeddings;
using Microsoft.Extensions.AI;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace AgileQuant.Tests.Models.Onnx;

/// <summary>
/// Our FP32 all-MiniLM-L6-v2 against ONNX Runtime running the package's own ONNX file on the same token ids
/// (an independent implementation of every operator), pooled the sentence-transformers way.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class MiniLmOnnxRuntimeReferenceTests
{
    private const int MaxTokens = 128;

    private static float[] ReferenceEmbedding(InferenceSession session, int[] ids)
    {
        int n = ids.Length;
        var inputIds = new DenseTensor<long>(ids.Select(i => (long)i).ToArray(), [1, n]);
        var mask = new DenseTensor<long>(Enumerable.Repeat(1L, n).ToArray(), [1, n]);
        var types = new DenseTensor<long>(new long[n], [1, n]);
        using var results = session.Run(
        [
            NamedOnnxValue.CreateFromTensor("input_ids", inputIds),
            NamedOnnxValue.CreateFromTensor("attention_mask", mask),
            NamedOnnxValue.CreateFromTensor("token_type_ids", types),
        ]);
        float[] hidden = results.First(r => r.Name == "last_hidden_state").AsEnumerable<float>().ToArray(); // (n, 384)
        int d = hidden.Length / n;
        var mean = new double[d];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < d; c++) mean[c] += hidden[i * d + c];
        double norm = Math.Sqrt(mean.Sum(v => v * v / ((double)n * n)));
        return mean.Select(v => (float)(v / n / norm)).ToArray();
    }

    /// <summary>
    /// The first 50 non-empty WikiText-2 lines by default; <c>AGILEQUANT_ORT_SENTENCES=2000</c> runs the report's 2,000
    /// (docs/accuracy-encoder.md quotes that run's printed minimum and mean).
    /// </summary>
    [Test]
    public void Fp32EmbeddingsMatchOnnxRuntimeOnFiftySentences()
    {
        int count = int.TryParse(Environment.GetEnvironmentVariable("AGILEQUANT_ORT_SENTENCES"), out int requested) && requested > 0 ? requested : 50;
        string[] lines = MiniLmPackage.WikiLines(count);
        Assert.That(lines, Has.Length.EqualTo(count));
        using var session = new InferenceSession(MiniLmPackage.ResourceViaRuntime("model.onnx"));
        EncoderContext context = MiniLmPackage.Model.CreateContext();
        var cosines = new List<double>();
        foreach (string line in lines)
        {
            int[] ids = MiniLmPackage.Tokens(line, MaxTokens);
            cosines.Add(MiniLmPackage.Cosine(context.Embed(ids), ReferenceEmbedding(session, ids)));
        }
        TestContext.Out.WriteLine($"cosine to ONNX Runtime over {count} sentences: min {cosines.Min():F8}, mean {cosines.Average():F8}");
        Assert.That(cosines, Has.All.GreaterThanOrEqualTo(0.99999));
    }

    [Test]
    public void MappedConfigurationIsAllMiniLmL6V2()
    {
        EncoderConfig c = MiniLmPackage.Model.Config;
        Assert.That((c.VocabSize, c.HiddenSize, c.NumLayers, c.NumHeads, c.IntermediateSize, c.MaxPositions, c.TokenTypes),
            Is.EqualTo((30522, 384, 6, 12, 1536, 512, 2)));
    }

    [Test]
    public void TokenizerLowercasesAndWrapsWithClsAndSep()
    {
        SentenceEncoder encoder = MiniLmPackage.Encoder;
        int[] upper = encoder.Tokenize("The Quick Brown Fox");
        int[] lower = encoder.Tokenize("the quick brown fox");
        Assert.That(upper, Is.EqualTo(lower));
        Assert.That(upper[0], Is.EqualTo(101)); // [CLS] in bert-base-uncased's vocab.txt
        Assert.That(upper[^1], Is.EqualTo(102)); // [SEP]
        Assert.That(encoder.Tokenize(string.Join(' ', Enumerable.Repeat("word", 1000))), Has.Length.EqualTo(SentenceEncoder.DefaultMaxTokens));
    }

    [Test]
    public async Task EmbeddingGeneratorReturnsUnitVectorsThatRankParaphrasesFirst()
    {
        using var generator = new SentenceEmbeddingGenerator(MiniLmPackage.Encoder);
        GeneratedEmbeddings<Embedding<float>> result = await generator.GenerateAsync(
            ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]);
        Assert.That(result, Has.Count.EqualTo(3));
        float[][] v = result.Select(e => e.Vector.ToArray()).ToArray();
        Assert.That(v.Select(e => MiniLmPackage.Cosine(e, e)), Has.All.EqualTo(1.0).Within(1e-6));
        Assert.That(v[0].Length, Is.EqualTo(384));
        Assert.That(MiniLmPackage.Cosine(v[0], v[1]), Is.GreaterThan(MiniLmPackage.Cosine(v[0], v[2]) + 0.3));
        Assert.That(generator.GetService(typeof(EmbeddingGeneratorMetadata)), Is.SameAs(generator.Metadata));
        Assert.That(result.Usage!.InputTokenCount, Is.GreaterThan(6));
    }

    [Test]
    public void PruningKeepsClsAndSepAndRandomScoringIsReproducible()
    {
        int[] ids = MiniLmPackage.Tokens(MiniLmPackage.WikiLines(3)[2], MaxTokens);
        Assume.That(ids.Length, Is.GreaterThan(20));
        var schedule = TokenPruningSchedule.Progressive(6, 2, 0.5);
        foreach (TokenScoring scoring in new[] { TokenScoring.StartTokenAttention, TokenScoring.Random })
        {
            EncoderModel pruned = MiniLmPackage.Model.With(new RuntimeOptions { Pruning = schedule }, scoring, scoringSeed: 7);
            EncoderContext a = pruned.CreateContext(), b = pruned.CreateContext();
            float[] first = a.Embed(ids), second = b.Embed(ids);
            Assert.That(first, Is.EqualTo(second));
            Assert.That(a.SurvivingTokenIndices[0], Is.EqualTo(0));
            Assert.That(a.SurvivingTokenIndices[^1], Is.EqualTo(ids.Length - 1));
            Assert.That(a.SurvivingTokenIndices.Count, Is.LessThan(ids.Length * 0.6));
        }
    }
}
