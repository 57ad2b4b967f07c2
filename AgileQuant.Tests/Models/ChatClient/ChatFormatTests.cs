using System.Text;
using System.Text.Json;
using AgileQuant.Cli.Bench;
using AgileQuant.Core;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.Tokenizers;
using LLama;
using LLama.Common;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.ChatClient;

/// <summary>
/// Chat formats recognised from models' own templates, against independent references: the Jinja renderings of real
/// templates in ../shared/assets/chat-templates (text and token ids), llama.cpp's <c>llama_chat_apply_template</c> and
/// <c>llama_tokenize</c> (LLamaSharp), and templates read by hand where neither covers a case.
/// </summary>
[NonParallelizable]
public class ChatFormatTests
{
    /// <summary>The fixed multi-turn conversation: system, user, assistant, user (case (c) of the shared renderings).</summary>
    internal static readonly (string Role, string Content)[] Conversation =
    [
        ("system", "You are a helpful assistant."),
        ("user", "What is 2+2?"),
        ("assistant", "4."),
        ("user", "And 3+3?"),
    ];

    internal static ChatMessage[] Messages(IEnumerable<(string Role, string Content)> turns) =>
        [.. turns.Select(t => new ChatMessage(new ChatRole(t.Role), t.Content))];

    private static string Render(ChatTemplate template, IEnumerable<(string Role, string Content)> turns) =>
        string.Concat(template.FormatSegments(Messages(turns)));

    /// <summary>llama.cpp's <c>llama_chat_apply_template</c> for <paramref name="template"/> (a template text or a format name), with the assistant's header.</summary>
    private static string LlamaCppApply(string template, IEnumerable<(string Role, string Content)> turns)
    {
        LlamaCppSession.ConfigureLogging();
        var applied = new LLamaTemplate(template) { AddAssistant = true };
        foreach ((string role, string content) in turns) applied.Add(role, content);
        return Encoding.UTF8.GetString(applied.Apply());
    }

    internal sealed record SharedCase((string Role, string Content)[] Messages, string Text, int[] Ids);

    internal sealed record SharedTemplate(string Template, string? BosToken, IReadOnlyList<SharedCase> Cases, int[] StopIds);

    internal static SharedTemplate ReadShared(string name)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(SharedAssets.Require($"assets/chat-templates/{name}.json")));
        JsonElement root = doc.RootElement;
        var cases = root.GetProperty("cases").EnumerateArray().Select(c => new SharedCase(
            [.. c.GetProperty("messages").EnumerateArray().Select(m => (m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!))],
            c.GetProperty("text").GetString()!,
            [.. c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32())])).ToList();
        string? bos = root.GetProperty("bos_token").ValueKind == JsonValueKind.String ? root.GetProperty("bos_token").GetString() : null;
        int[] stops = [.. root.GetProperty("stop_tokens").EnumerateArray().Select(s => s.GetProperty("id").GetInt32())];
        return new SharedTemplate(root.GetProperty("template").GetString()!, bos, cases, stops);
    }

    /// <summary>The Jinja text without the BOS the template writes itself (formats leave BOS to the tokenizer, as llama.cpp does).</summary>
    private static string WithoutBos(string text, string? bos) => bos is not null && text.StartsWith(bos, StringComparison.Ordinal) ? text[bos.Length..] : text;

    [TestCase("llama3_1", "llama3")]
    [TestCase("llama3_1-instruct-hf", "llama3")]
    [TestCase("qwen3", "chatml")]
    [TestCase("qwen2_5-instruct-hf", "chatml")]
    [TestCase("gemma3", "gemma")]
    public void RealTemplates_RenderAsTheirJinjaReference(string name, string format)
    {
        SharedTemplate shared = ReadShared(name);
        ChatTemplate template = ChatTemplate.FromTemplateText(shared.Template);
        Assert.That(template.Name, Is.EqualTo(format));
        Assert.That(shared.Cases.Select(c => c.Messages.Length), Does.Contain(4), "the multi-turn case is among the references");
        foreach (SharedCase c in shared.Cases)
            Assert.That(Render(template, c.Messages), Is.EqualTo(WithoutBos(c.Text, shared.BosToken)), string.Join(" | ", c.Messages.Select(m => m.Role)));
    }

    [TestCase("llama-bpe", "llama3_1")]
    [TestCase("llama-bpe", "llama3_1-instruct-hf")]
    [TestCase("qwen2", "qwen3")]
    [TestCase("qwen2", "qwen2_5-instruct-hf")]
    public void RealTemplates_EncodeToTheReferenceIds_WithTheGgufVocabulary(string vocabulary, string name)
    {
        SharedTemplate shared = ReadShared(name);
        // The tokenizer as a loaded model's chat client uses it: BOS as the file says, special tokens parsed.
        Tokenizer tokenizer = TokenizerFile.Load(TokenizerVectorTests.GgufPath(vocabulary), parseSpecialTokens: true).Tokenizer;
        ChatTemplate template = ChatTemplate.FromTemplateText(shared.Template);
        foreach (SharedCase c in shared.Cases)
            Assert.That(tokenizer.EncodeToIds(Render(template, c.Messages)), Is.EqualTo(c.Ids), c.Text);
    }

    [Test]
    public void Gemma3Template_EncodesToTheReferenceIds_WithTheHuggingFaceTokenizer()
    {
        using var dir = new TempDirectory();
        SharedTemplate shared = ReadShared("gemma3");
        Tokenizer tokenizer = TokenizerFile.Load(TokenizerVectorTests.UnpackHf("gemma3", dir.Path), parseSpecialTokens: true).Tokenizer;
        ChatTemplate template = ChatTemplate.FromTemplateText(shared.Template);
        foreach (SharedCase c in shared.Cases)
            Assert.That(tokenizer.EncodeToIds(Render(template, c.Messages)), Is.EqualTo(c.Ids), c.Text);
    }

    // Templates in the form their models ship them (test inputs; the expected text comes from llama.cpp).
    private const string Phi35Template =
        "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
        + "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
        + "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

    private const string MistralInstructTemplate =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";

    private const string MistralV1Template =
        "{{ bos_token }}{% for message in loop_messages %}{% if message['role'] == 'user' %}{% if loop.last and system_message is defined %}"
        + "{{ ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{% else %}{{ ' [INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
        + "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token}}{% endif %}{% endfor %}";

    internal const string MistralV3Template =
        "{{ bos_token }}{% for message in loop_messages %}{% if message['role'] == 'user' %}{% if tools is not none %}{{ '[AVAILABLE_TOOLS] [' }}{% endif %}"
        + "{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content']|trim + eos_token}}{% endif %}{% endfor %}";

    private const string MistralV3TekkenTemplate =
        "{{ bos_token }}{% for message in loop_messages %}{% if message['role'] == 'user' %}{% if tools is not none %}{{ \"[AVAILABLE_TOOLS][\" }}{% endif %}"
        + "{{ \"[INST]\" + message['content'] + \"[/INST]\" }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";

    private const string MistralV7Template =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}"
        + "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";

    /// <summary>Each format, from a template text (real ones where stored) and by name, equals llama.cpp's rendering of the same template.</summary>
    private static IEnumerable<TestCaseData> FormatsAsLlamaCppWritesThem()
    {
        TestCaseData Shared(string name, string format, bool defaultSystemTurn = false) =>
            new TestCaseData("shared:" + name, format, defaultSystemTurn).SetArgDisplayNames(name);
        yield return Shared("llama3_1", "llama3");
        yield return Shared("qwen3", "chatml");
        // Qwen2.5's template writes its own system turn when the conversation has none; llama.cpp does not (the template wins:
        // RealTemplates_RenderAsTheirJinjaReference).
        yield return Shared("qwen2_5-instruct-hf", "chatml", defaultSystemTurn: true);
        yield return Shared("gemma3", "gemma");
        yield return new TestCaseData(Phi35Template, "phi3", false).SetArgDisplayNames("phi-3.5");
        yield return new TestCaseData(MistralInstructTemplate, "inst", false).SetArgDisplayNames("mistral-instruct-v0.2");
        yield return new TestCaseData(MistralV1Template, "mistral-v1", false).SetArgDisplayNames("mistral-v1");
        yield return new TestCaseData(MistralV3Template, "mistral-v3", false).SetArgDisplayNames("mistral-v3");
        yield return new TestCaseData(MistralV3TekkenTemplate, "mistral-v3-tekken", false).SetArgDisplayNames("mistral-v3-tekken");
        yield return new TestCaseData(MistralV7Template, "mistral-v7", false).SetArgDisplayNames("mistral-v7");
        foreach (string name in new[] { "chatml", "llama3", "phi3", "gemma", "inst", "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7" })
            yield return new TestCaseData(name, name, false).SetArgDisplayNames("name " + name);
    }

    [TestCaseSource(nameof(FormatsAsLlamaCppWritesThem))]
    public void Format_EqualsLlamaCppChatApplyTemplate(string template, string format, bool defaultSystemTurn)
    {
        if (template.StartsWith("shared:", StringComparison.Ordinal)) template = ReadShared(template["shared:".Length..]).Template;
        ChatTemplate ours = ChatTemplate.FromTemplateText(template);
        Assert.That(ours.Name, Is.EqualTo(format));
        // llama.cpp takes "inst" for its own format name "llama2".
        string llamaCppTemplate = template == "inst" ? "llama2" : template;
        Assert.That(Render(ours, Conversation), Is.EqualTo(LlamaCppApply(llamaCppTemplate, Conversation)));
        if (!defaultSystemTurn)
            Assert.That(Render(ours, Conversation.Skip(1)), Is.EqualTo(LlamaCppApply(llamaCppTemplate, Conversation.Skip(1))), "without a system message");
    }

    [TestCase("llama-bpe")]
    [TestCase("qwen2")]
    [TestCase("phi-3")]
    public void GgufOwnTemplate_TokenizesAsLlamaCpp(string vocabulary)
    {
        string path = TokenizerVectorTests.GgufPath(vocabulary);
        string template = GgufFile.Read(path).GetString("tokenizer.chat_template");
        string text = Render(ChatTemplate.FromTemplateText(template), Conversation);
        Tokenizer ours = TokenizerFile.Load(path, parseSpecialTokens: true).Tokenizer;
        LlamaCppSession.ConfigureLogging();
        using LLamaWeights weights = LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
        int[] expected = [.. weights.Tokenize(text, true, true, Encoding.UTF8).Select(t => (int)t)];
        Assert.That(ours.EncodeToIds(text), Is.EqualTo(expected), text);
    }

    [Test]
    public void Phi3TemplateWithoutSystemTurns_DropsTheSystemMessage()
    {
        // The template in ggml-vocab-phi-3.gguf (Phi-3-mini-4k's first one) writes user and assistant turns only; read by hand:
        // '<|user|>' + '\n' + content + '<|end|>' + '\n' + '<|assistant|>' + '\n' per user turn, content + '<|end|>' + '\n' per reply.
        string template = GgufFile.Read(TokenizerVectorTests.GgufPath("phi-3")).GetString("tokenizer.chat_template");
        ChatTemplate phi3 = ChatTemplate.FromTemplateText(template);
        Assert.That(phi3.Name, Is.EqualTo("phi3"));
        Assert.That(Render(phi3, Conversation), Is.EqualTo("<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4.<|end|>\n<|user|>\nAnd 3+3?<|end|>\n<|assistant|>\n"));
        Assert.That(Render(phi3, Conversation.Skip(1)), Is.EqualTo(LlamaCppApply(template, Conversation.Skip(1))), "llama.cpp agrees where the template has nothing to drop");
    }

    [Test]
    public void Qwen3Template_DropsTheReasoningOfEarlierReplies()
    {
        // The qwen3 template, read by hand: an assistant turn before the last user query is written as
        // message.content.split('</think>')[-1].lstrip('\n'); Qwen2.5's template has no such step.
        (string, string)[] conversation = [("user", "What is 2+2?"), ("assistant", "<think>\nTwo and two.\n</think>\n\n4."), ("user", "And 3+3?")];
        Assert.That(Render(ChatTemplate.FromTemplateText(ReadShared("qwen3").Template), conversation), Is.EqualTo(
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(Render(ChatTemplate.FromTemplateText(ReadShared("qwen2_5-instruct-hf").Template), conversation),
            Does.Contain("<think>\nTwo and two.\n</think>\n\n4."));
    }

    [Test]
    public void Llama2ChatTemplate_IsTheShippedLlama2Format()
    {
        const string llama2Chat =
            "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}"
            + "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
            + "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
            + "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
            + "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
        Assert.That(ChatTemplate.FromTemplateText(llama2Chat), Is.SameAs(ChatTemplate.Llama2));
        Assert.That(ChatTemplate.FromName("LLAMA2"), Is.SameAs(ChatTemplate.Llama2));
    }

    [Test]
    public void UnknownTemplatesAndNames_AreRefusedInOneLine()
    {
        var unknown = Assert.Throws<ArgumentException>(() => ChatTemplate.FromTemplateText("{% for m in messages %}\n<<turn>>{{ m.content }}{% endfor %}"))!;
        Assert.That(unknown.Message, Does.Contain("{% for m in messages %}\\n<<turn>>"));
        Assert.That(unknown.Message.Split('\n'), Has.Length.EqualTo(1));
        Assert.That(unknown.Message, Does.Contain("chatml"), "names the formats to choose from");

        // Recognised by llama.cpp, not written by AgileQuant: named as llama.cpp names it.
        var deepseek = Assert.Throws<ArgumentException>(() => ChatTemplate.FromTemplateText("### Instruction:\n{{ content }}\n<|EOT|>"))!;
        Assert.That(deepseek.Message, Does.Contain("'deepseek'"));

        var name = Assert.Throws<ArgumentException>(() => ChatTemplate.FromName("vicuna"))!;
        Assert.That(name.Message, Does.Contain("'vicuna'").And.Contain("llama3"));
        Assert.That(ChatTemplate.Names, Is.SupersetOf(new[] { "chatml", "llama3", "llama2", "phi3", "gemma", "mistral-v7", "plain" }));
    }

    [Test]
    public void LoadedModelWithAnUnknownTemplate_NamesItWhenAChatClientIsMade()
    {
        LoadedModel stories = ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));
        var model = new LoadedModel(stories.Model, stories.Tokenizer, stories.SourcePath, "gguf")
        {
            ChatTemplateText = "{{ messages | my_own_filter }}",
            ChatTemplateOrigin = "model.gguf: metadata 'tokenizer.chat_template'",
        };
        var e = Assert.Throws<AgileQuantException>(() => model.AsChatClient())!;
        Assert.That(e.Message, Does.StartWith("model.gguf: metadata 'tokenizer.chat_template': the chat template \"{{ messages | my_own_filter }}\""));
        Assert.That(e.Message.Split('\n'), Has.Length.EqualTo(1));
        Assert.That(model.AsChatClient(new AgileQuantChatClientOptions { Template = ChatTemplate.FromName("chatml") }).Template.Name, Is.EqualTo("chatml"),
            "a named format replaces the model's template");
    }

    [Test]
    public void HuggingFaceFolder_TemplateFromJinjaFileOrTokenizerConfig()
    {
        using var dir = new TempDirectory();
        TokenizerVectorTests.UnpackHf("gemma3", dir.Path);
        Assert.That(ModelChatTemplate.ReadHfDirectory(dir.Path)?.Text, Is.EqualTo(ReadShared("gemma3").Template));
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"),
            """{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "<|im_start|>"}]}""");
        Assert.That(ModelChatTemplate.ReadHfDirectory(dir.Path)?.Text, Is.EqualTo("<|im_start|>"));
        File.WriteAllText(Path.Combine(dir.Path, "chat_template.jinja"), "{{ '<start_of_turn>' }}");
        Assert.That(ModelChatTemplate.ReadHfDirectory(dir.Path)?.Text, Is.EqualTo("{{ '<start_of_turn>' }}"), "chat_template.jinja comes first");
    }

    // ---- A GGUF model with a real vocabulary, its template and an end-of-turn token, end to end ----

    private static readonly SyntheticModelShape TinyLlama = new("chat-test", new TransformerConfig
    {
        Family = "llama", VocabSize = 32000, HiddenSize = 64, IntermediateSize = 128, NumLayers = 1, NumHeads = 4, NumKvHeads = 4,
        MaxSequenceLength = 256, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Rotary,
        RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
    });

    /// <summary>A random-weight Llama GGUF with the llama-spm vocabulary (Llama 2 / Mistral's), a template, and optionally an end-of-turn id.</summary>
    private static void WriteChatModel(string path, string template, int? endOfTurn)
    {
        GgufFile vocab = GgufFile.Read(TokenizerVectorTests.GgufPath("llama-spm"));
        var vocabulary = new GgufVocabulary(vocab.GetArray<string>("tokenizer.ggml.tokens"), vocab.GetArray<float>("tokenizer.ggml.scores"),
            vocab.GetArray<int>("tokenizer.ggml.token_type"), 1, 2, 0);
        SyntheticGgufModel.Write(path, TinyLlama, GgmlType.F32, seed: 11, vocabulary, w =>
        {
            w.AddString("tokenizer.chat_template", template);
            if (endOfTurn is int eot) w.AddUInt32("tokenizer.ggml.eot_token_id", (uint)eot);
        });
    }

    [Test]
    public void GgufModel_ChatClientPromptEqualsLlamaCpp_WithTheModelsOwnTemplate()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "chat.gguf");
        WriteChatModel(path, MistralInstructTemplate, endOfTurn: null);
        using LoadedModel loaded = ModelLoader.Load(path);
        Assert.That(loaded.ChatTemplateText, Is.EqualTo(MistralInstructTemplate));
        using AgileQuantChatClient client = loaded.AsChatClient();
        Assert.That(client.Template.Name, Is.EqualTo("inst"));

        // llama.cpp on the same file: its template (read from the model), then its tokenizer with BOS and special tokens parsed.
        LlamaCppSession.ConfigureLogging();
        using LLamaWeights weights = LLamaWeights.LoadFromFile(new ModelParams(path) { GpuLayerCount = 0 });
        var applied = new LLamaTemplate(weights) { AddAssistant = true };
        foreach ((string role, string content) in Conversation) applied.Add(role, content);
        string llamaCppText = Encoding.UTF8.GetString(applied.Apply());
        int[] expected = [.. weights.Tokenize(llamaCppText, true, true, Encoding.UTF8).Select(t => (int)t)];
        Assert.That(client.EncodePrompt(Messages(Conversation)), Is.EqualTo(expected), llamaCppText);
        Assert.That(expected, Does.Contain(2), "the earlier reply's </s> is the EOS token, not text");
    }

    [Test]
    public async Task GgufModel_GenerationStopsAtTheDeclaredEndOfTurnToken()
    {
        using var dir = new TempDirectory();
        string plainPath = Path.Combine(dir.Path, "plain.gguf"), eotPath = Path.Combine(dir.Path, "eot.gguf");
        WriteChatModel(plainPath, MistralInstructTemplate, endOfTurn: null);
        ChatMessage[] conversation = Messages(Conversation);

        // What the model writes greedily when nothing stops it.
        IReadOnlyList<int> free;
        using (LoadedModel plain = ModelLoader.Load(plainPath))
        {
            IReadOnlyList<int> prompt = plain.AsChatClient().EncodePrompt(conversation);
            free = (await new TextGenerator(plain.Model, plain.Tokenizer!).GenerateAsync(prompt,
                new GenerationOptions { MaxTokens = 6, Sampling = SamplingOptions.Greedy, EndTokenIds = [] }, null, CancellationToken.None)).Tokens;
        }
        Assert.That(free, Has.Count.EqualTo(6));
        // A token the model writes after its first one (not EOS, which ends replies anyway).
        int endOfTurn = free.Skip(1).First(t => t != 2 && t != free[0]);

        // The same weights declaring that token as end of turn: the reply stops where the model writes it.
        WriteChatModel(eotPath, MistralInstructTemplate, endOfTurn);
        using LoadedModel declared = ModelLoader.Load(eotPath);
        Assert.That(declared.EndTokenIds, Does.Contain(endOfTurn).And.Contain(2));
        using AgileQuantChatClient client = declared.AsChatClient();
        ChatResponse response = await client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 6 });
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(free.ToList().IndexOf(endOfTurn)), "generated up to, not including, the end token");
    }
}
