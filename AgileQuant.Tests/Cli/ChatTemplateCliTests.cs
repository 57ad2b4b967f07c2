using System.Diagnostics;
using System.Text;
using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;
using static AgileQuant.Tests.Cli.AgileQuantProcess;

namespace AgileQuant.Tests.Cli;

/// <summary><c>--chat-template NAME</c> on <c>generate</c>, <c>chat</c> and <c>serve</c>: checked before the model loads, and the prompt sent as a user turn.</summary>
[TestFixture]
public class ChatTemplateCliTests
{
    private static string MissingModel => Path.Combine(Path.GetTempPath(), "agilequant-no-such-model-" + Guid.NewGuid().ToString("N") + ".bin");

    [Test]
    public void UnknownNameIsAOneLineErrorBeforeTheModelLoads()
    {
        CliValidationTests.AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--chat-template", "nope"), 1, "--chat-template: unknown format 'nope'");
        CliValidationTests.AssertOneLineError(Run("chat", "--model", MissingModel, "--chat-template", "nope"), 1, "--chat-template: unknown format 'nope'");
        CliValidationTests.AssertOneLineError(Run("serve", "--model", MissingModel, "--port", "0", "--chat-template", "nope"), 1, "--chat-template: unknown format 'nope'");
    }

    [Test]
    public async Task ServeFormatsChatCompletionsInTheNamedFormat()
    {
        string model = SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");
        (Process server, Uri address) = StartServer("--model", model, "--port", "0", "--chat-template", "chatml");
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
            using var body = new StringContent("""{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}""", Encoding.UTF8, "application/json");
            using HttpResponseMessage response = await http.PostAsync(new Uri(address, "v1/chat/completions"), body);
            string text = await response.Content.ReadAsStringAsync();
            Assert.That(response.IsSuccessStatusCode, text);
            using JsonDocument json = JsonDocument.Parse(text);
            // ChatML's user turn and assistant header, as text (the llama2.c vocabulary has no <|im_start|> token), not the model's default format.
            using LoadedModel loaded = ModelLoader.Load(model);
            int chatMl = loaded.Tokenizer!.EncodeToIds("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n").Count;
            Assert.That(json.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(chatMl));
            using AgileQuantChatClient own = loaded.AsChatClient();
            Assert.That(own.EncodePrompt([new ChatMessage(ChatRole.User, "Hi")]), Has.Count.Not.EqualTo(chatMl), "the model's own format differs");
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            server.Dispose();
        }
    }

    [Test]
    public void GenerateSendsThePromptAsAUserTurnInTheNamedFormat()
    {
        string model = SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");
        var run = Run("generate", "--model", model, "--prompt", "Hi", "--chat-template", "chatml", "--max-tokens", "2", "--temperature", "0", "--json");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        using JsonDocument json = JsonDocument.Parse(run.Stdout);
        // ChatML's user turn and assistant header, as text: the llama2.c vocabulary has no <|im_start|> token.
        using LoadedModel loaded = ModelLoader.Load(model);
        int expected = loaded.Tokenizer!.EncodeToIds("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n").Count;
        Assert.That(json.RootElement.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(expected));
    }
}
