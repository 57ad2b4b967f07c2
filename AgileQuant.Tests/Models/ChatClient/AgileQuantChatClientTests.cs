using System.Text;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;

namespace AgileQuant.Tests.Models.ChatClient;

/// <summary>The <see cref="IChatClient"/> over the bundled stories260K model (assets/models/stories260K), with fixed seeds.</summary>
[TestFixture]
public class AgileQuantChatClientTests
{
    private const string Prompt = "Once upon a time";

    private static ChatOptions Sampled => Sampling(seed: 42, temperature: 0.8f, maxTokens: 48);

    private static ChatOptions Sampling(long seed, float temperature, int maxTokens) =>
        new() { Temperature = temperature, TopP = 0.95f, Seed = seed, MaxOutputTokens = maxTokens };

    private static LoadedModel Load() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));

    private static ChatMessage[] Conversation(string text = Prompt) => [new ChatMessage(ChatRole.User, text)];

    private static async Task<(string Text, List<ChatResponseUpdate> Updates)> StreamAsync(IChatClient client, ChatOptions options, string prompt = Prompt)
    {
        var text = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation(prompt), options))
        {
            text.Append(update.Text);
            updates.Add(update);
        }
        return (text.ToString(), updates);
    }

    [Test]
    public async Task StreamedTextEqualsGetResponseText()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        (string streamed, List<ChatResponseUpdate> updates) = await StreamAsync(client, Sampled);
        ChatResponse response = await client.GetResponseAsync(Conversation(), Sampled);
        Assert.That(streamed, Is.Not.Empty);
        Assert.That(response.Text, Is.EqualTo(streamed));
        Assert.That(response.FinishReason, Is.EqualTo(updates[^1].FinishReason));
        Assert.That(updates.Take(updates.Count - 1).All(u => u.FinishReason is null && u.Contents.All(c => c is TextContent)), Is.True, "only the final update carries the finish reason and usage");
        Assert.That(updates[^1].Contents.Single(), Is.InstanceOf<UsageContent>());
    }

    [Test]
    public async Task UsageCountsPromptTokensAndEveryGeneratedToken()
    {
        LoadedModel loaded = Load();
        using AgileQuantChatClient client = loaded.AsChatClient();
        ChatOptions options = new() { MaxOutputTokens = 200 };
        ChatResponse response = await client.GetResponseAsync(Conversation(), options);

        // The plain template's prompt, tokenized independently of the client; the same generation run through TextGenerator.
        string promptText = $"User: {Prompt}\nAssistant:";
        IReadOnlyList<int> promptIds = loaded.Tokenizer!.EncodeToIds(promptText);
        GenerationResult reference = await new TextGenerator(loaded.Model, loaded.Tokenizer).GenerateAsync(promptText,
            new GenerationOptions { MaxTokens = 200, StopSequences = ["\nUser:"] }, progress: null);

        Assert.That(response.Usage, Is.Not.Null);
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(promptIds.Count));
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(reference.Tokens.Count));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(promptIds.Count + reference.Tokens.Count));
        Assert.That(response.Text, Is.EqualTo(reference.Text));
    }

    [Test]
    public async Task MaxOutputTokensEndsWithLengthAfterExactlyThatManyTokens()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        ChatResponse response = await client.GetResponseAsync(Conversation(), Sampling(seed: 42, temperature: 0.8f, maxTokens: 7));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(7));
    }

    [Test]
    public async Task EndOfSequenceOrStopSequenceEndsWithStop()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        // Greedy stories260K writes "." early; a stop sequence on it must end the reply before it.
        ChatResponse response = await client.GetResponseAsync(Conversation(), new ChatOptions { MaxOutputTokens = 200, StopSequences = ["."] });
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(response.Text, Does.Not.Contain("."));
        Assert.That(response.Usage!.OutputTokenCount, Is.LessThan(200));
    }

    [Test]
    public async Task CancellationStopsBeforeTheNextTokenAndTheModelStaysUsable()
    {
        LoadedModel loaded = Load();
        using AgileQuantChatClient client = loaded.AsChatClient();
        using var cts = new CancellationTokenSource();
        int textUpdates = 0, afterCancel = 0;
        Assert.That(async () =>
        {
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation(), Sampled, cts.Token))
            {
                if (cts.IsCancellationRequested) afterCancel++;
                if (update.Text.Length > 0 && ++textUpdates == 3) cts.Cancel();
            }
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(textUpdates, Is.EqualTo(3));
        Assert.That(afterCancel, Is.EqualTo(0), "no update after cancellation");

        ChatResponse next = await client.GetResponseAsync(Conversation(), Sampled);
        using AgileQuantChatClient fresh = Load().AsChatClient();
        ChatResponse reference = await fresh.GetResponseAsync(Conversation(), Sampled);
        Assert.That(next.Text, Is.EqualTo(reference.Text));
        Assert.That(next.Usage!.OutputTokenCount, Is.EqualTo(reference.Usage!.OutputTokenCount));
    }

    [Test]
    public async Task ConcurrentCallsGiveTheSameOutputsAsSequentialCalls()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        ChatOptions first = Sampling(seed: 1, temperature: 0.8f, maxTokens: 48);
        ChatOptions second = Sampling(seed: 2, temperature: 1.0f, maxTokens: 48);
        string firstAlone = (await StreamAsync(client, first, "Lily had a")).Text;
        string secondAlone = (await StreamAsync(client, second)).Text;

        Task<(string, List<ChatResponseUpdate>)> a = Task.Run(() => StreamAsync(client, first, "Lily had a"));
        Task<(string, List<ChatResponseUpdate>)> b = Task.Run(() => StreamAsync(client, second));
        await Task.WhenAll(a, b);

        Assert.That(firstAlone, Is.Not.EqualTo(secondAlone), "the two requests must differ for the check to mean anything");
        Assert.That(a.Result.Item1, Is.EqualTo(firstAlone));
        Assert.That(b.Result.Item1, Is.EqualTo(secondAlone));
    }

    [Test]
    public void ChatOptionsMapOntoTheSampler()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        GenerationOptions mapped = client.ToGenerationOptions(new ChatOptions
        {
            Temperature = 0.7f, TopK = 40, TopP = 0.9f, Seed = 1234, MaxOutputTokens = 33, StopSequences = ["THE END"],
        });
        Assert.That(mapped.Sampling, Is.EqualTo(new SamplingOptions { Temperature = 0.7f, TopK = 40, TopP = 0.9f, Seed = 1234 }));
        Assert.That(mapped.MaxTokens, Is.EqualTo(33));
        Assert.That(mapped.StopSequences, Is.EqualTo(new[] { "\nUser:", "THE END" }));
        Assert.That(() => client.ToGenerationOptions(new ChatOptions { TopP = 1.5f }), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => client.ToGenerationOptions(new ChatOptions { MaxOutputTokens = -1 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void GetServiceReturnsMetadataAndTheModel()
    {
        LoadedModel loaded = Load();
        using AgileQuantChatClient client = loaded.AsChatClient();
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.That(metadata?.ProviderName, Is.EqualTo("agilequant"));
        Assert.That(metadata?.DefaultModelId, Is.EqualTo("stories260K"));
        Assert.That(client.GetService<AgileQuant.Core.Runtime.TransformerModel>(), Is.SameAs(loaded.Model));
        Assert.That(client.GetService<AgileQuantChatClient>(), Is.SameAs(client));
        Assert.That(client.GetService(typeof(ChatClientMetadata), "some key"), Is.Null);
        Assert.That(client.GetService<Uri>(), Is.Null);
    }

    [Test]
    public void TinyVocabularyGetsThePlainTemplateUnlessOverridden()
    {
        LoadedModel loaded = Load();
        Assert.That(loaded.AsChatClient().Template, Is.SameAs(ChatTemplate.Plain));
        Assert.That(loaded.AsChatClient(new AgileQuantChatClientOptions { Template = ChatTemplate.Llama2 }).Template, Is.SameAs(ChatTemplate.Llama2));
    }

    [Test]
    public void PenaltiesMinPAndTheModelsEndTokensMapFromChatOptions()
    {
        using AgileQuantChatClient client = Load().AsChatClient();
        GenerationOptions mapped = client.ToGenerationOptions(new ChatOptions
        {
            Temperature = 0.7f, FrequencyPenalty = 0.5f, PresencePenalty = -0.25f, Seed = 7,
            AdditionalProperties = new AdditionalPropertiesDictionary { ["min_p"] = 0.1, ["repetition_penalty"] = 1.2f, ["repeat_last_n"] = 32 },
        });
        Assert.That(mapped.Sampling, Is.EqualTo(new SamplingOptions
        {
            Temperature = 0.7f, FrequencyPenalty = 0.5f, PresencePenalty = -0.25f, Seed = 7, MinP = 0.1f, RepetitionPenalty = 1.2f, PenaltyWindow = 32,
        }));
        Assert.That(mapped.EndTokenIds, Is.EquivalentTo(new[] { 2, 1 }), "stories260K (llama2.c) ends at EOS and BOS");
        Assert.That(() => client.ToGenerationOptions(new ChatOptions { AdditionalProperties = new AdditionalPropertiesDictionary { ["min_p"] = "high" } }),
            Throws.InstanceOf<ArgumentException>());
        Assert.That(() => client.ToGenerationOptions(new ChatOptions { PresencePenalty = 3f }), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
