using System.Text;
using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Tests.Core.Generation;

/// <summary>Generation on the bundled stories260K model (committed in assets/, so no ../shared needed).</summary>
[TestFixture]
public class TextGeneratorTests
{
    private static LoadedModel Bundled() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions());

    private static async Task<(string Text, List<int> Tokens, FinishReason? Finish)> Collect(IAsyncEnumerable<GenerationUpdate> stream)
    {
        var text = new StringBuilder();
        var tokens = new List<int>();
        FinishReason? finish = null;
        await foreach (GenerationUpdate u in stream)
        {
            text.Append(u.Text);
            if (u.TokenId >= 0) tokens.Add(u.TokenId);
            finish = u.Finish ?? finish;
        }
        return (text.ToString(), tokens, finish);
    }

    [Test]
    public async Task GreedyStreamEqualsTheGoldenTokensAndTheirDecoding()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        var (text, tokens, finish) = await Collect(generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 60 }));
        JsonElement golden = JsonDocument.Parse(File.ReadAllText(SharedAssets.Require("assets/golden/stories260K_once_upon_a_time.json"))).RootElement;
        int[] expected = golden.GetProperty("greedy_continuation").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.That(tokens, Is.EqualTo(expected));
        Assert.That(finish, Is.EqualTo(FinishReason.MaxTokens));
        // The streamed pieces concatenate to the decoding of prompt + continuation, minus the prompt.
        string whole = m.Tokenizer!.Decode(generator.EncodePrompt("Once upon a time").Concat(tokens))!;
        Assert.That("Once upon a time" + text, Is.EqualTo(whole));
    }

    [Test]
    public async Task SameSeedSameTextDifferentSeedDifferentText()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        GenerationOptions Options(int seed) => new() { MaxTokens = 40, Sampling = new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = seed } };
        var a = await Collect(generator.GenerateAsync("Lily", Options(1)));
        var b = await Collect(generator.GenerateAsync("Lily", Options(1)));
        var c = await Collect(generator.GenerateAsync("Lily", Options(2)));
        Assert.That(b.Tokens, Is.EqualTo(a.Tokens));
        Assert.That(c.Tokens, Is.Not.EqualTo(a.Tokens));
    }

    [Test]
    public async Task StopSequenceEndsTheTextBeforeIt()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        var (text, _, finish) = await Collect(generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 60, StopSequences = ["Lily"] }));
        Assert.That(finish, Is.EqualTo(FinishReason.StopSequence));
        Assert.That(text, Is.EqualTo(", there was a little girl named "));
    }

    [Test]
    public void CancellationStopsTheStreamAndLeavesTheModelUsable()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        using var cancel = new CancellationTokenSource();
        int received = 0;
        Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (GenerationUpdate _ in generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 200 }, cancel.Token))
                if (++received == 5) cancel.Cancel();
        });
        Assert.That(received, Is.EqualTo(5), "no token after cancellation");
        var again = generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 3 }, null).GetAwaiter().GetResult();
        Assert.That(again.Tokens, Has.Count.EqualTo(3));
    }

    [Test]
    public void DetokenizerNeverEmitsHalfACharacter()
    {
        // "é" is two UTF-8 bytes; "日" three. The 512-token vocabulary has no such pieces, so they encode
        // to byte-fallback tokens <0xC3><0xA9> etc., one byte per token.
        Llama2cTokenizer tokenizer = Llama2cTokenizer.Load(SharedAssets.InRepo("assets/models/stories260K/tok512.bin"));
        const string text = "café 日本";
        int[] ids = tokenizer.EncodeToIds(text).ToArray();
        var detokenizer = new IncrementalDetokenizer(tokenizer, ids[0]);
        var pieces = ids.Skip(1).Select(detokenizer.Add).ToList();
        Assert.That(pieces.Any(p => p.Length == 0), Is.True, "some byte tokens must be held back");
        Assert.That(pieces, Has.None.Contains('\uFFFD'));
        Assert.That(string.Concat(pieces), Is.EqualTo(text));
    }

    [Test]
    public async Task Llama2cModelsEndAtBosAsRunCDoes()
    {
        // llama2.c's run.c stops when the model samples BOS (id 1): stories260K writes it to start the next story.
        LoadedModel m = Bundled();
        Assert.That(m.EndTokenIds, Is.EquivalentTo(new[] { 2, 1 }));
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        SamplingOptions sampling = SamplingOptions.LlamaCppDefaults with { Seed = 3 };
        GenerationResult declared = await generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 500, Sampling = sampling, EndTokenIds = m.EndTokenIds }, null);
        GenerationResult eosOnly = await generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 500, Sampling = sampling }, null);
        Assert.That(declared.Finish, Is.EqualTo(FinishReason.EndOfSequence));
        Assert.That(declared.Tokens, Has.No.Member(1));
        Assert.That(eosOnly.Tokens.Take(declared.Tokens.Count), Is.EqualTo(declared.Tokens), "the same draws up to the stop");
        Assert.That(eosOnly.Tokens[declared.Tokens.Count], Is.EqualTo(1), "without BOS as an end token the next token is BOS and the text runs on");
    }

    [Test]
    public async Task TimingsSeparatePromptEvaluationFromDecodeSteps()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        GenerationResult result = await generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 12, EndTokenIds = [] }, null);
        Assert.That(result.Finish, Is.EqualTo(FinishReason.MaxTokens));
        Assert.That(result.Timings.PromptSeconds, Is.GreaterThan(0));
        Assert.That(result.Timings.DecodeSteps, Is.EqualTo(11), "the first token comes from the prompt's logits, each later one from a decode step");
        Assert.That(result.Timings.DecodeSeconds, Is.GreaterThan(0));
        Assert.That(result.Timings.DecodeTokensPerSecond, Is.EqualTo(11 / result.Timings.DecodeSeconds).Within(1e-9));
    }

    [Test]
    public async Task RepetitionPenaltyChangesTheGreedyText()
    {
        LoadedModel m = Bundled();
        var generator = new TextGenerator(m.Model, m.Tokenizer!);
        GenerationResult plain = await generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 60 }, null);
        GenerationResult penalized = await generator.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 60, Sampling = new SamplingOptions { RepetitionPenalty = 1.3f } }, null);
        Assert.That(penalized.Tokens, Is.Not.EqualTo(plain.Tokens));
        int Repeats(IReadOnlyList<int> tokens) => tokens.Count - tokens.Distinct().Count();
        Assert.That(Repeats(penalized.Tokens), Is.LessThan(Repeats(plain.Tokens)));
    }
}
