using System.Text;
using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.Architectures;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;
using AgileQuant.Tests.Models.Tokenizers;
using LLama;
using LLama.Common;
using LLama.Native;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using static AgileQuant.Tests.Cli.AgileQuantProcess;

namespace AgileQuant.Tests.Models.ChatClient;

/// <summary>
/// Chat end to end on every family: the family's seeded random-weight model (<see cref="FamilyTestModel"/>, its vocabulary
/// size set to the real vocabulary's) written by our GGUF writer with a real vocabulary from ../shared's ggml-vocab files
/// (Llama 3's byte-level BPE, Qwen's, Phi-3's and Llama 2's SentencePiece; Gemma 3's from its tokenizer.json) and the family's chat template, against
/// llama.cpp (LLamaSharp) on the same file: the vocabulary's test vectors tokenize as the <c>.out</c> files say in llama.cpp
/// and in AgileQuant; the conversation formatted by <see cref="AgileQuantChatClient"/> is, token for token, llama.cpp's
/// <c>llama_chat_apply_template</c> of the file's template tokenized by llama.cpp; the model's end tokens are llama.cpp's
/// end-of-generation set; and a greedy reply stops at an end token, through <see cref="IChatClient"/>,
/// <c>agilequant generate --chat-template model</c> and <c>agilequant chat</c>.
/// </summary>
/// <remarks>
/// Forcing an end token: the greedy reply of the model is computed with no end tokens, with its logits at every step; then
/// the LM head row of an end token that is neither in the prompt nor in the reply before step k (k ≥ 1) is set to
/// <see cref="Boost"/> times the row of the reply's k-th token (the embedding row too where they are tied: that end token
/// never enters the context before step k). Step k is the first whose token has a positive logit and, at every earlier step,
/// a logit below the argmax's by more than that factor: earlier steps keep their argmax, and at step k the end token's logit
/// (tanh soft-capped or not, an increasing function of the row's dot product) exceeds every other. Gemma has no
/// ggml-vocab file: both Gemma models use Gemma 3's own vocabulary, hf/gemma3's tokenizer.json (262,145 tokens) written as
/// llama.cpp's converter writes it (<see cref="GgufVocabulary.FromTokenizerJson"/>, checked in <see cref="TokenizerJsonGgufExportTests"/>);
/// Gemma 2's 256,000-token vocabulary is not in ../shared (its turn tokens are the same texts). With a shared template, the
/// template's stop tokens are among the end tokens and its Jinja references encode to their ids.
/// Embedding and head are written as Q8_0 (the vocabularies are 32k–262k tokens); the layers stay F32. Heads are untied (a
/// random model whose head is its embedding repeats the prompt's last token) but Gemma's, whose GGUF form ties them (its
/// replies may then end at step 0, before any token); llama.cpp loads these files for their
/// vocabulary and metadata only (it computes every family's models in <see cref="FamilyConformanceTests"/>).
/// </remarks>
[NonParallelizable]
public class FamilyChatTests
{
    private const string GemmaVocabulary = "hf-gemma3";
    private const string Question = "What is 2+2?";
    private const int ReplyTokens = 8;
    private const float Boost = 1.05f;

    /// <summary>A family's model with a vocabulary, a template and the end-of-turn token it declares by text.</summary>
    /// <param name="Model">The <see cref="FamilyTestModel"/> name.</param>
    /// <param name="Vocabulary">The ggml-vocab file, or <see cref="GemmaVocabulary"/> (hf/gemma3's tokenizer.json written as GGUF).</param>
    /// <param name="Template">Where the template comes from: <c>vocabulary</c> (the vocabulary file's own), <c>shared:NAME</c> (../shared/assets/chat-templates) or <c>mistral-v3</c>.</param>
    /// <param name="EndOfTurn">The end-of-turn token's text.</param>
    /// <param name="TemplateHasSystemTurns">False where the template drops system messages (Phi-3-mini's first template) while
    /// llama.cpp's built-in format writes them: our formatting follows the template, so llama.cpp is given the conversation without them.</param>
    public sealed record FamilyChatCase(string Model, string Vocabulary, string Template, string EndOfTurn, bool TemplateHasSystemTurns = true)
    {
        /// <summary>The test case name.</summary>
        public override string ToString() => $"{Model}+{Vocabulary}";
    }

    public static IEnumerable<FamilyChatCase> Cases { get; } =
    [
        new("llama3.2", "llama-bpe", "vocabulary", "<|eot_id|>"),
        new("mistral", "llama-spm", "mistral-v3", "</s>"),
        new("qwen2.5", "qwen2", "vocabulary", "<|im_end|>"),
        new("qwen3", "qwen2", "shared:qwen3", "<|im_end|>"),
        new("phi3", "phi-3", "vocabulary", "<|end|>", TemplateHasSystemTurns: false),
        new("gemma2", GemmaVocabulary, "shared:gemma3", "<end_of_turn>"),
        new("gemma3", GemmaVocabulary, "shared:gemma3", "<end_of_turn>"),
    ];

    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TemporaryDirectory("aq-family-chat-");

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    [Test]
    public void EveryFamilyWithAGgufForm_HasAChatCase() =>
        Assert.That(Cases.Select(c => FamilyTestModel.All.Single(m => m.Name == c.Model).Config.Family).Distinct(),
            Is.EquivalentTo(FamilyTestModel.All.Where(m => m.RunsInLlamaCpp).Select(m => m.Config.Family).Distinct()));

    [TestCaseSource(nameof(Cases))]
    public void OurGguf_TokenizesItsVectorsAsLlamaCpp_AndFormatsTheConversationAsLlamaCpp(FamilyChatCase c)
    {
        string path = WriteModel(c, forceEndAt: null);
        using LLamaWeights llama = LoadLlamaCpp(path);
        using LoadedModel loaded = ModelLoader.Load(path);

        // The vocabulary as written: its vectors through llama.cpp and through us (no BOS, special tokens not parsed).
        Tokenizer withoutBos = GgufTokenizerLoader.Load(path, addBos: false);
        var failures = new List<string>();
        foreach ((string text, int[] expected) in c.Vocabulary == GemmaVocabulary ? TokenizerVectorTests.HfVectors("gemma3") : GgufTokenizerLoaderTests.ReadVectors(c.Vocabulary))
        {
            int[] theirs = [.. llama.Tokenize(text, false, false, Encoding.UTF8).Select(t => (int)t)];
            int[] ours = [.. withoutBos.EncodeToIds(text)];
            if (!theirs.SequenceEqual(expected) || !ours.SequenceEqual(expected))
                failures.Add($"\"{text}\": expected {string.Join(' ', expected)}, llama.cpp {string.Join(' ', theirs)}, ours {string.Join(' ', ours)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));

        // The multi-turn conversation: the file's template applied by llama.cpp, tokenized by llama.cpp with BOS as the vocabulary says and special tokens parsed.
        using AgileQuantChatClient client = loaded.AsChatClient();
        string llamaCppText = LlamaCppApply(llama, ChatFormatTests.Conversation.Where(t => c.TemplateHasSystemTurns || t.Role != "system"));
        int[] expectedIds = LlamaCppTokenize(llama, llamaCppText);
        Assert.That(client.EncodePrompt(ChatFormatTests.Messages(ChatFormatTests.Conversation)), Is.EqualTo(expectedIds), $"{client.Template.Name}: {llamaCppText}");
        int endOfTurn = LlamaCppTokenize(llama, c.EndOfTurn, addBos: false).Single();
        if (c.EndOfTurn != "</s>") Assert.That(expectedIds, Does.Contain(endOfTurn), "the earlier reply's end of turn is its token, not text");

        // Generation ends at every token llama.cpp ends it at, and only there.
        Assert.That(loaded.EndTokenIds, Is.EquivalentTo(LlamaCppEndOfGeneration(llama)));
        Assert.That(loaded.EndTokenIds, Does.Contain(endOfTurn));
        TestContext.Out.WriteLine($"{c}: end tokens {string.Join(' ', loaded.EndTokenIds.Order())}");
        // The shared template's stop tokens (tokenizer_config.json's eos_token and the models' generation_config.json eos ids) all end generation.
        if (!c.Template.StartsWith("shared:", StringComparison.Ordinal)) return;
        ChatFormatTests.SharedTemplate shared = ChatFormatTests.ReadShared(c.Template["shared:".Length..]);
        Assert.That(loaded.EndTokenIds, Is.SupersetOf(shared.StopIds));
        // And the template's Jinja references (rendered and tokenized by transformers.js): the prompt the chat client encodes is their ids.
        foreach (ChatFormatTests.SharedCase reference in shared.Cases)
            Assert.That(client.EncodePrompt(ChatFormatTests.Messages(reference.Messages)), Is.EqualTo(reference.Ids), reference.Text);
    }

    /// <summary>
    /// Phi-3-mini's own template (the one in ggml-vocab-phi-3.gguf, Phi-3-mini-4k-instruct's first) writes no system turn, while
    /// llama.cpp's built-in <c>phi3</c> format (<c>llama_chat_apply_template</c>) writes <c>&lt;|system|&gt;</c>: where the two
    /// differ the template wins (docs/tokenizers.md). The expected text is the template rendered by hand:
    /// <code>{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'&lt;|user|&gt;' + '\n' + message['content'] + '&lt;|end|&gt;' + '\n' + '&lt;|assistant|&gt;' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '&lt;|end|&gt;' + '\n'}}{% endif %}{% endfor %}</code>
    /// BOS (<c>&lt;s&gt;</c>) first; the system message matches neither branch, so nothing; each user turn is
    /// <c>&lt;|user|&gt;\n{content}&lt;|end|&gt;\n&lt;|assistant|&gt;\n</c> (the assistant's header comes with it, so
    /// <c>add_generation_prompt</c> adds nothing); an assistant turn is <c>{content}&lt;|end|&gt;\n</c>. Its ids are llama.cpp's
    /// tokenization of that text (special tokens parsed, BOS as written).
    /// </summary>
    [Test]
    public void Phi3_WithASystemMessage_FormatsAsItsTemplate_NotAsLlamaCppsBuiltInFormat()
    {
        FamilyChatCase c = Cases.Single(x => x.Model == "phi3");
        string path = WriteModel(c, forceEndAt: null);
        using LLamaWeights llama = LoadLlamaCpp(path);
        using LoadedModel loaded = ModelLoader.Load(path);
        Assert.That(loaded.ChatTemplateText, Does.Not.Contain("system"), "the template this test renders by hand");
        const string rendered = "<s><|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4.<|end|>\n<|user|>\nAnd 3+3?<|end|>\n<|assistant|>\n";
        Assert.That(ChatFormatTests.Conversation[0], Is.EqualTo(("system", "You are a helpful assistant.")));

        using AgileQuantChatClient client = loaded.AsChatClient();
        ChatMessage[] conversation = ChatFormatTests.Messages(ChatFormatTests.Conversation);
        Assert.That("<s>" + string.Concat(client.Template.FormatSegments(conversation)), Is.EqualTo(rendered), "formats leave BOS to the tokenizer");
        Assert.That(client.EncodePrompt(conversation), Is.EqualTo(LlamaCppTokenize(llama, rendered, addBos: false)));

        // The difference: llama.cpp's built-in format writes the system turn the template drops.
        Assert.That(LlamaCppApply(llama, ChatFormatTests.Conversation), Does.StartWith("<|system|>\nYou are a helpful assistant.<|end|>\n"));
    }

    [TestCaseSource(nameof(Cases))]
    public async Task GreedyReply_StopsAtAnEndToken_ThroughTheChatClientGenerateAndChat(FamilyChatCase c)
    {
        ChatMessage[] question = [new ChatMessage(ChatRole.User, Question)];
        string freePath = WriteModel(c, forceEndAt: null);
        IReadOnlyList<int> prompt, reply;
        int[] endTokens, llamaCppPrompt;
        float[] logits; // (positions, vocab)
        using (LoadedModel free = ModelLoader.Load(freePath))
        {
            using AgileQuantChatClient client = free.AsChatClient();
            prompt = client.EncodePrompt(question);
            string text = string.Concat(client.Template.FormatSegments(question));
            reply = (await new TextGenerator(free.Model, free.Tokenizer!).GenerateAsync(prompt,
                new GenerationOptions { MaxTokens = ReplyTokens, Sampling = SamplingOptions.Greedy, EndTokenIds = [] }, null, CancellationToken.None)).Tokens;
            endTokens = [.. free.EndTokenIds];
            logits = free.CreateContext().Forward([.. prompt, .. reply.Take(ReplyTokens - 1)], allLogits: true);
            using LLamaWeights llama = LoadLlamaCpp(freePath);
            llamaCppPrompt = LlamaCppTokenize(llama, text);
        }
        // (Formats compared with llama.cpp's on the multi-turn conversation above; here the template may add a default system turn, as Qwen2.5's does.)
        Assert.That(prompt, Is.EqualTo(llamaCppPrompt), "the one-message prompt as llama.cpp tokenizes our formatting of it");
        Assert.That(reply, Has.Count.EqualTo(ReplyTokens));
        int vocab = logits.Length / (prompt.Count + ReplyTokens - 1);
        ReadOnlySpan<float> Step(int j) => logits.AsSpan((prompt.Count - 1 + j) * vocab, vocab); // the logits that chose reply[j]
        for (int j = 0; j < ReplyTokens; j++) Assert.That(Step(j)[reply[j]], Is.EqualTo(Largest(Step(j))), $"step {j} is greedy");
        // The first step after the first that qualifies, else the first (an empty reply; Gemma's tied head repeats a token).
        int k = Enumerable.Range(0, ReplyTokens).Where(j => Step(j)[reply[j]] > 0 && !endTokens.Contains(reply[j])
            && Enumerable.Range(0, j).All(i => Boost * Step(i)[reply[j]] < Step(i)[reply[i]])).OrderBy(j => j == 0).FirstOrDefault(-1);
        Assert.That(k, Is.Not.Negative, $"a step to force (another seed would have one): reply {string.Join(' ', reply)}, its logits {string.Join(' ', Enumerable.Range(0, ReplyTokens).Select(j => Step(j)[reply[j]]))}");
        TestContext.Out.WriteLine($"{c}: reply {string.Join(' ', reply)}, forced to end at step {k}");
        Assert.That(reply.Take(k).Intersect(endTokens), Is.Empty, "the model writes no end token of its own before step k (another seed would)");
        int end = endTokens.Where(id => !prompt.Contains(id) && !reply.Take(k).Contains(id)).Min();

        string forcedPath = WriteModel(c, forceEndAt: (reply[k], end));
        ChatResponse response;
        using (LoadedModel forced = ModelLoader.Load(forcedPath))
        {
            using AgileQuantChatClient client = forced.AsChatClient();
            response = await client.GetResponseAsync(question, new ChatOptions { MaxOutputTokens = ReplyTokens });
        }
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(prompt.Count));
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(k), $"the reply {string.Join(' ', reply)} ends where token {end} replaces {reply[k]}");

        // The same through the tool: generate with the model's own template, and chat.
        var generate = Run("generate", "--model", forcedPath, "--prompt", Question, "--chat-template", "model", "--temperature", "0", "--max-tokens", $"{ReplyTokens}", "--json");
        Assert.That(generate.ExitCode, Is.EqualTo(0), generate.Stderr);
        using (JsonDocument json = JsonDocument.Parse(generate.Stdout))
        {
            JsonElement root = json.RootElement;
            Assert.That(root.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(llamaCppPrompt.Length));
            Assert.That(root.GetProperty("generated_tokens").GetInt32(), Is.EqualTo(k));
            Assert.That(root.GetProperty("finish").GetString(), Is.EqualTo("stop"));
            Assert.That(root.GetProperty("text").GetString(), Is.EqualTo(response.Text));
        }
        var chat = Run(["chat", "--model", forcedPath, "--temperature", "0", "--max-tokens", $"{ReplyTokens}"], Encoding.UTF8.GetBytes(Question + "\n"));
        Assert.That(chat.ExitCode, Is.EqualTo(0), chat.Stderr);
        Assert.That(chat.Stdout, Is.EqualTo(response.Text.TrimStart() + Environment.NewLine));
    }

    /// <summary>Byte-level BPE (Llama 3), SentencePiece keyed on the model's name (Phi-3) and a vocabulary with added turn tokens (Gemma).</summary>
    public static IEnumerable<FamilyChatCase> CheckpointCases => Cases.Where(c => c.Model is "llama3.2" or "phi3" or "gemma3");

    [TestCaseSource(nameof(CheckpointCases))]
    public void QuantizedCheckpoint_CarriesTheTemplateVocabularyAndEndTokens_AndFormatsAsItsSource(FamilyChatCase c)
    {
        string source = WriteModel(c, forceEndAt: null, GgmlType.F32), checkpoint = Path.Combine(_temp.FullPath, $"{c}-W8A8.safetensors");
        var quantize = Run("quantize", "--model", source, "--config", "W8A8", "--output", checkpoint);
        Assert.That(quantize.ExitCode, Is.EqualTo(0), quantize.Stderr);
        Assert.That(quantize.Stderr, Does.Not.Contain("warning"), "the GGUF's vocabulary is carried");

        ChatMessage[] conversation = ChatFormatTests.Messages(ChatFormatTests.Conversation);
        using LoadedModel original = ModelLoader.Load(source), quantized = ModelLoader.Load(checkpoint);
        Assert.That(quantized.ChatTemplateText, Is.EqualTo(original.ChatTemplateText).And.Not.Null);
        Assert.That(quantized.EndTokenIds, Is.EqualTo(original.EndTokenIds));
        using AgileQuantChatClient fromSource = original.AsChatClient(), fromCheckpoint = quantized.AsChatClient();
        Assert.That(fromCheckpoint.Template.Name, Is.EqualTo(fromSource.Template.Name));
        Assert.That(fromCheckpoint.EncodePrompt(conversation), Is.EqualTo(fromSource.EncodePrompt(conversation)));
        string text = string.Concat(fromSource.Template.FormatSegments(conversation));
        Assert.That(quantized.Tokenizer!.EncodeToIds(text), Is.EqualTo(original.Tokenizer!.EncodeToIds(text)), "special tokens as text, without parsing");

        // The tool formats the same prompt on both files.
        int PromptTokens(string model)
        {
            var run = Run("generate", "--model", model, "--prompt", Question, "--chat-template", "model", "--temperature", "0", "--max-tokens", "1", "--json");
            Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
            using JsonDocument json = JsonDocument.Parse(run.Stdout);
            return json.RootElement.GetProperty("prompt_tokens").GetInt32();
        }
        Assert.That(PromptTokens(checkpoint), Is.EqualTo(PromptTokens(source)).And.EqualTo(fromSource.EncodePrompt([new ChatMessage(ChatRole.User, Question)]).Count));
    }

    [Test]
    public void ExportGguf_OfAGgufModel_KeepsItsByteLevelBpeVocabularyAndTemplate()
    {
        FamilyChatCase c = Cases.Single(x => x.Model == "qwen2.5");
        string source = WriteModel(c, forceEndAt: null), exported = Path.Combine(_temp.FullPath, "qwen2.5-export-q4_0.gguf");
        var export = Run("export-gguf", "--model", source, "--output", exported, "--type", "Q4_0", "--head-type", "Q8_0", "--json");
        Assert.That(export.ExitCode, Is.EqualTo(0), export.Stderr);
        using (JsonDocument json = JsonDocument.Parse(export.Stdout)) Assert.That(json.RootElement.GetProperty("vocabulary").GetString(), Is.EqualTo("gguf"));
        GgufFile file = GgufFile.Read(exported);
        Assert.That((file.GetString("tokenizer.ggml.model"), file.GetString("tokenizer.ggml.pre")), Is.EqualTo(("gpt2", "qwen2")));

        ChatMessage[] conversation = ChatFormatTests.Messages(ChatFormatTests.Conversation);
        using LoadedModel original = ModelLoader.Load(source), copy = ModelLoader.Load(exported);
        Assert.That(copy.ChatTemplateText, Is.EqualTo(original.ChatTemplateText).And.Not.Null);
        Assert.That(copy.EndTokenIds, Is.EquivalentTo(original.EndTokenIds));
        using AgileQuantChatClient fromSource = original.AsChatClient(), fromCopy = copy.AsChatClient();
        using LLamaWeights llama = LoadLlamaCpp(exported);
        int[] expected = LlamaCppTokenize(llama, LlamaCppApply(llama, ChatFormatTests.Conversation));
        Assert.That(fromCopy.EncodePrompt(conversation), Is.EqualTo(expected).And.EqualTo(fromSource.EncodePrompt(conversation)));
    }

    /// <summary>
    /// Writes <paramref name="c"/>'s model (cached per case, forcing and type); with <paramref name="forceEndAt"/>, the LM head
    /// row of its end token set to <see cref="Boost"/> times its token's (see the remarks). Embedding and head are
    /// <paramref name="embeddingType"/> (the quantizer takes F32 heads only).
    /// </summary>
    private string WriteModel(FamilyChatCase c, (int Token, int End)? forceEndAt, GgmlType embeddingType = GgmlType.Q8_0)
    {
        string path = Path.Combine(_temp.FullPath, (forceEndAt is { } f ? $"{c}-{f.Token}-{f.End}" : $"{c}") + $"-{embeddingType}.gguf");
        if (File.Exists(path)) return path;
        (GgufVocabulary vocabulary, string name, string? fileTemplate) = Vocabulary(c);
        FamilyTestModel family = FamilyTestModel.All.Single(m => m.Name == c.Model);
        // Untied head where the family's GGUF form allows one: with the head tied to the embedding, a random model repeats the prompt's last token.
        bool tied = family.Config.Family is "gemma2" or "gemma3";
        FamilyTestModel sized = family with { TiedHead = tied, Config = family.Config with { VocabSize = vocabulary.Tokens.Count, BosTokenId = vocabulary.BosId, EosTokenId = vocabulary.EosId } };
        TransformerWeights weights = sized.RandomWeights(2000 + Cases.ToList().IndexOf(c));
        // Gemma's embedding enters scaled by √d: scaled down by as much, so that it does not swamp the layers' output (and the
        // soft-capped logits do not saturate).
        if (weights.Config.EmbeddingScale != 1f)
            {
            float[] table = weights.TokenEmbedding!; // random FP32 weights
            for (int i = 0; i < table.Length; i++) table[i] /= weights.Config.EmbeddingScale;
        }
        if (forceEndAt is (int token, int end))
        {
            int width = weights.Config.HiddenSize;
            float[] head = ((Fp32Matrix)weights.LmHead.Weight).Data; // (vocab, width); the embedding table itself where tied
            for (int i = 0; i < width; i++) head[end * width + i] = Boost * head[token * width + i];
        }
        string template = c.Template switch
        {
            "vocabulary" => fileTemplate!,
            "mistral-v3" => ChatFormatTests.MistralV3Template,
            _ => ChatFormatTests.ReadShared(c.Template["shared:".Length..]).Template,
        };
        GgufModelWriter.Write(path, weights, vocabulary, new GgufWriteOptions { EmbeddingType = embeddingType, OutputType = embeddingType, Name = name, ChatTemplate = template });
        return path;
    }

    private static float Largest(ReadOnlySpan<float> values)
    {
        float max = float.NegativeInfinity;
        foreach (float v in values) max = Math.Max(max, v);
        return max;
    }

    /// <summary>
    /// The case's vocabulary read from its ggml-vocab file, or Gemma 3's tokenizer.json written as llama.cpp's converter writes
    /// it (<see cref="GgufVocabulary.FromTokenizerJson"/>); the file's <c>general.name</c> (llama.cpp keys Phi-3's token handling on it) and its template.
    /// </summary>
    private static (GgufVocabulary Vocabulary, string Name, string? Template) Vocabulary(FamilyChatCase c)
    {
        if (c.Vocabulary == GemmaVocabulary) return (TokenizerJsonGgufExportTests.HfVocabulary("gemma3"), "gemma-3", null);
        GgufFile file = GgufFile.Read(TokenizerVectorTests.GgufPath(c.Vocabulary));
        GgufVocabulary vocabulary = GgufVocabulary.FromGguf(file);
        string? template = file.TryGetValue(ModelChatTemplate.GgufKey, out _) ? file.GetString(ModelChatTemplate.GgufKey) : null;
        return (vocabulary, file.GetString("general.name"), template);
    }

    private static LLamaWeights LoadLlamaCpp(string path)
    {
        LlamaCppSession.ConfigureLogging();
        // The vocabulary and metadata only: llama.cpp runs the families' models in FamilyConformanceTests; Gemma's there are tied.
        return LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
    }

    /// <summary>llama.cpp's <c>llama_chat_apply_template</c> with the model's own template, and the assistant's header.</summary>
    private static string LlamaCppApply(LLamaWeights weights, IEnumerable<(string Role, string Content)> turns)
    {
        var applied = new LLamaTemplate(weights) { AddAssistant = true };
        foreach ((string role, string content) in turns) applied.Add(role, content);
        return Encoding.UTF8.GetString(applied.Apply());
    }

    /// <summary>llama.cpp's <c>llama_tokenize</c>: BOS as the vocabulary says (when <paramref name="addBos"/>), special tokens parsed.</summary>
    private static int[] LlamaCppTokenize(LLamaWeights weights, string text, bool addBos = true) =>
        [.. weights.Tokenize(text, addBos, true, Encoding.UTF8).Select(t => (int)t)];

    /// <summary>Every id llama.cpp's <c>llama_vocab_is_eog</c> holds true for.</summary>
    private static int[] LlamaCppEndOfGeneration(LLamaWeights weights)
    {
        SafeLlamaModelHandle.Vocabulary vocab = weights.Vocab;
        return [.. Enumerable.Range(0, vocab.Count).Where(id => ((LLamaToken)id).IsEndOfGeneration(vocab))];
    }
}
