using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;

namespace AgileQuant.Tests.Models.ChatClient;

/// <summary>Chat templates against the formats their models were trained on (Meta's Llama-2 chat_completion layout).</summary>
[TestFixture]
public class ChatTemplateTests
{
    [Test]
    public void Llama2PutsTheSystemPromptInTheFirstInstructionAndClosesEveryExchange()
    {
        ChatMessage[] conversation =
        [
            new(ChatRole.System, "Be brief."),
            new(ChatRole.User, "Hi"),
            new(ChatRole.Assistant, "Hello!"),
            new(ChatRole.User, "Tell a story"),
        ];
        IReadOnlyList<string> segments = ChatTemplate.Llama2.FormatSegments(conversation);
        // Meta's llama/generation.py: f"{B_INST} {B_SYS}{system}{E_SYS}{user} {E_INST} {answer} " per closed exchange.
        Assert.That(segments, Is.EqualTo(new[]
        {
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! ",
            "[INST] Tell a story [/INST]",
        }));
    }

    [Test]
    public void PlainWritesRolePrefixedLinesEndingWithAssistant()
    {
        ChatMessage[] conversation = [new(ChatRole.System, "S"), new(ChatRole.User, "U1"), new(ChatRole.Assistant, "A1"), new(ChatRole.User, "U2")];
        Assert.That(ChatTemplate.Plain.FormatSegments(conversation), Is.EqualTo(new[] { "System: S\nUser: U1\nAssistant: A1\nUser: U2\nAssistant:" }));
        Assert.That(ChatTemplate.Plain.StopSequences, Is.EqualTo(new[] { "\nUser:" }));
    }

    [Test]
    public void ForModelChoosesLlama2OnlyForLlamaWithA32kSentencePieceVocabulary()
    {
        LoadedModel stories = ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));
        TransformerConfig llama32k = stories.Model.Config with { VocabSize = 32000 };
        Assert.That(stories.Model.Config.Family, Is.EqualTo("llama"));
        Assert.That(ChatTemplate.ForModel(llama32k, stories.Tokenizer), Is.SameAs(ChatTemplate.Llama2));
        Assert.That(ChatTemplate.ForModel(llama32k, null), Is.SameAs(ChatTemplate.Plain), "no tokenizer: no SentencePiece evidence");
        Assert.That(ChatTemplate.ForModel(llama32k with { Family = "opt" }, stories.Tokenizer), Is.SameAs(ChatTemplate.Plain));
        Assert.That(ChatTemplate.ForModel(stories.Model.Config, stories.Tokenizer), Is.SameAs(ChatTemplate.Plain), "512-token vocabulary");
    }
}
