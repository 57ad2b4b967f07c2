using System.Text.Json;
using AgileQuant.Models;
using static AgileQuant.Tests.Cli.AgileQuantProcess;

namespace AgileQuant.Tests.Cli;

/// <summary><c>--chat-template NAME</c> on <c>generate</c> and <c>chat</c>: checked before the model loads, and the prompt sent as a user turn.</summary>
[TestFixture]
public class ChatTemplateCliTests
{
    private static string MissingModel => Path.Combine(Path.GetTempPath(), "agilequant-no-such-model-" + Guid.NewGuid().ToString("N") + ".bin");

    [Test]
    public void UnknownNameIsAOneLineErrorBeforeTheModelLoads()
    {
        CliValidationTests.AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--chat-template", "nope"), 1, "--chat-template: unknown format 'nope'");
        CliValidationTests.AssertOneLineError(Run("chat", "--model", MissingModel, "--chat-template", "nope"), 1, "--chat-template: unknown format 'nope'");
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
