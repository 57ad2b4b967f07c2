using AgileQuant.Core.Generation;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// Many generation contexts over one shared <see cref="TransformerModel"/> (stories260K) at once, with random
/// cancellations: every run that is not cancelled gives exactly the tokens of the same run done alone, every
/// cancelled run's tokens are a prefix of them, and the shared model stays intact (checked again at the end).
/// </summary>
[TestFixture]
public sealed class ConcurrentInferenceStressTests
{
    private const int Contexts = 8;
    private const int TokensPerContext = 64;
    private const int Rounds = 20;

    private static readonly string[] Prompts = ["Once upon a time", "The little dog", "Lily wanted to", "One day, a bird",
        "Tom and Sue", "The sun was", "A big red ball", "Mom said"];

    // Half the runs greedy, half sampled with their own seed: both must be reproducible under concurrency.
    private static GenerationOptions Options(int run) => new()
    {
        MaxTokens = TokensPerContext,
        StopAtEndOfSequence = false,
        Sampling = run % 2 == 0 ? SamplingOptions.Greedy : new SamplingOptions { Temperature = 0.9f, TopK = 40, TopP = 0.95f, Seed = 100 + run },
    };

    // cancelAfterTokens: the caller's own cancellation once that many tokens have arrived (0: never).
    private static async Task<List<int>> Generate(TextGenerator generator, IReadOnlyList<int> prompt, int run, CancellationTokenSource cancel,
        List<int>? sink = null, int cancelAfterTokens = 0)
    {
        List<int> tokens = sink ?? [];
        await foreach (GenerationUpdate update in generator.GenerateAsync(prompt, Options(run), cancel.Token))
        {
            if (update.TokenId >= 0) tokens.Add(update.TokenId);
            if (tokens.Count == cancelAfterTokens) await cancel.CancelAsync();
        }
        return tokens;
    }

    /// <param name="scheme">"FP32", or a quantization scheme: W4A4 runs every linear through the shared integer kernels
    /// (per-thread activation scratch, one reusable job per kernel) from all contexts at once.</param>
    [TestCase("FP32")]
    [TestCase("W4A4-RTN")]
    public async Task ConcurrentContextsWithRandomCancellationsMatchSequentialRuns(string scheme)
    {
        var model = new TransformerModel(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);
        if (scheme != "FP32") model = ModelQuantizer.Quantize(model, QuantizationConfig.Parse(scheme));
        var tokenizer = Llama2cTokenizer.Load(SharedAssets.InRepo("assets/models/stories260K/tok512.bin"), model.Config.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        IReadOnlyList<int>[] prompts = Prompts.Select(p => generator.EncodePrompt(p)).ToArray();
        List<int>[] expected = new List<int>[Contexts];
        using (var never = new CancellationTokenSource())
            for (int run = 0; run < Contexts; run++) expected[run] = await Generate(generator, prompts[run], run, never);
        Assert.That(expected.All(e => e.Count == TokensPerContext));
        float[] firstLogits = model.CreateContext().Forward([.. prompts[0]]);

        var random = new Random(scheme == "FP32" ? 2024 : 2025);
        int cancelled = 0, completed = 0, cancelledByCount = 0;
        for (int round = 0; round < Rounds; round++)
        {
            // Every run races with the others; about a third get cancelled: after a random delay (any point, also
            // inside a forward pass) or after a random number of tokens (so some cancellations always happen).
            var runs = new List<(int Run, List<int> Tokens, Task Task, CancellationTokenSource Cancel)>();
            for (int run = 0; run < Contexts; run++)
            {
                var cancel = new CancellationTokenSource();
                int cancelAfterTokens = 0;
                switch (random.Next(6))
                {
                    case 0: cancel.CancelAfter(TimeSpan.FromMilliseconds(random.Next(1, 40))); break;
                    case 1: cancelAfterTokens = random.Next(1, TokensPerContext - 1); cancelledByCount++; break;
                }
                var tokens = new List<int>();
                int captured = run;
                runs.Add((run, tokens, Task.Run(() => Generate(generator, prompts[captured], captured, cancel, tokens, cancelAfterTokens)), cancel));
            }
            foreach ((int run, List<int> tokens, Task task, CancellationTokenSource cancel) in runs)
            {
                try
                {
                    await task;
                    completed++;
                    Assert.That(tokens, Is.EqualTo(expected[run]), $"round {round}, run {run}: concurrent tokens differ from the sequential run");
                }
                catch (OperationCanceledException)
                {
                    cancelled++;
                    Assert.That(cancel.IsCancellationRequested, $"round {round}, run {run}: cancelled without being asked");
                    Assert.That(tokens, Is.EqualTo(expected[run].Take(tokens.Count)), $"round {round}, run {run}: a cancelled run's tokens must be a prefix");
                }
                cancel.Dispose();
            }
        }
        TestContext.Out.WriteLine($"{scheme}: {Rounds} rounds × {Contexts} contexts × {TokensPerContext} tokens: {completed} runs completed, {cancelled} cancelled part-way");
        Assert.That(cancelledByCount, Is.GreaterThan(0));
        Assert.That(cancelled, Is.GreaterThanOrEqualTo(cancelledByCount), "every run cancelled after k tokens must end cancelled");
        Assert.That(completed, Is.GreaterThan(Rounds * Contexts / 2));
        // The shared model is untouched: a fresh context still gives the first logits bit for bit.
        Assert.That(model.CreateContext().Forward([.. prompts[0]]), Is.EqualTo(firstLogits));
    }
}
