using System.Text;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Tokenizers;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.ChatClient;

/// <summary>
/// Turns a conversation into the prompt text a model was trained on. A prompt is a list of segments: each is
/// encoded on its own (the tokenizer adds BOS where its model expects it), every segment but the last is closed
/// with the model's EOS token, and the model continues the last one.
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>Short name for display (<c>llama2</c>, <c>plain</c>).</summary>
    public abstract string Name { get; }

    /// <summary>Texts that end the assistant's turn when the model writes them (besides EOS).</summary>
    public virtual IReadOnlyList<string> StopSequences => [];

    /// <summary>
    /// Formats <paramref name="messages"/> (system, user and assistant turns; any other role counts as user) into
    /// prompt segments that end where the assistant's reply begins.
    /// </summary>
    public abstract IReadOnlyList<string> FormatSegments(IReadOnlyList<ChatMessage> messages);

    /// <summary>Llama-2 chat: <c>[INST] &lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n{user} [/INST] {assistant}</c>, one segment per exchange.</summary>
    public static ChatTemplate Llama2 { get; } = new Llama2ChatTemplate();

    /// <summary>Plain text: <c>System: …\nUser: …\nAssistant:</c>, stopping when the model starts a new <c>User:</c> line.</summary>
    public static ChatTemplate Plain { get; } = new PlainChatTemplate();

    /// <summary>
    /// The template for a model whose files carry none: <see cref="Llama2"/> for the llama family with a 32,000-token
    /// SentencePiece vocabulary (the Llama 2 tokenizer), <see cref="Plain"/> otherwise. A model's own template is read by
    /// <see cref="FromTemplateText"/> (<c>LoadedModel.AsChatClient</c> does so).
    /// </summary>
    public static ChatTemplate ForModel(TransformerConfig config, Tokenizer? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool sentencePiece = tokenizer is ScoredMergeTokenizer or SentencePieceTokenizer;
        bool llama2 = string.Equals(config.Family, "llama", StringComparison.OrdinalIgnoreCase) && config.VocabSize == 32000 && sentencePiece;
        return llama2 ? Llama2 : Plain;
    }

    /// <summary>
    /// The names <see cref="FromName"/> accepts: <c>chatml</c> (Qwen2/2.5/3), <c>llama3</c>, <c>llama2</c> (Llama-2-chat),
    /// <c>inst</c> (<c>[INST]</c> without a system block, llama.cpp's <c>llama2</c>), <c>mistral-v1</c>, <c>mistral-v3</c>,
    /// <c>mistral-v3-tekken</c>, <c>mistral-v7</c>, <c>phi3</c>, <c>gemma</c> and <c>plain</c>.
    /// </summary>
    public static IReadOnlyList<string> Names => ChatFormats.Names;

    /// <summary>The format named <paramref name="name"/> (case-insensitive; one of <see cref="Names"/>).</summary>
    /// <exception cref="ArgumentException">No format has that name.</exception>
    public static ChatTemplate FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ChatFormats.FindByName(name)
            ?? throw new ArgumentException($"Unknown chat template name '{name}': expected one of {string.Join(", ", Names)}.", nameof(name));
    }

    /// <summary>
    /// The format of a model's chat template (the Jinja text of GGUF <c>tokenizer.chat_template</c> or Hugging Face
    /// <c>chat_template</c>), recognised by its marker texts as llama.cpp's <c>llama_chat_apply_template</c> does; a text
    /// that is one of <see cref="Names"/> picks that format. Where the template renders differently from llama.cpp's
    /// built-in format, the template's rendering is written (docs/architecture.md, "Chat formats").
    /// </summary>
    /// <exception cref="ArgumentException">No format AgileQuant writes recognises the template (the message quotes its start).</exception>
    public static ChatTemplate FromTemplateText(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (ChatFormats.Recognise(template, out string? recognisedAs) is ChatTemplate recognised) return recognised;
        string problem = ChatFormats.Unrecognised(template, recognisedAs);
        throw new ArgumentException(char.ToUpperInvariant(problem[0]) + problem[1..] + ".", nameof(template));
    }

    /// <summary>
    /// Whether the prompt spells the model's special tokens (<c>&lt;|im_start|&gt;</c>, <c>&lt;/s&gt;</c>) and is encoded as
    /// one text with them parsed; false: segments encoded as plain text, joined by EOS.
    /// </summary>
    internal virtual bool WritesSpecialTokens => false;

    /// <summary>The text of a message (its text contents joined), trimmed.</summary>
    private protected static string TextOf(ChatMessage message) => message.Text.Trim();
}

/// <summary>The Llama-2 chat format: system prompt inside the first <c>[INST]</c>, each exchange its own BOS…EOS segment.</summary>
internal sealed class Llama2ChatTemplate : ChatTemplate
{
    public override string Name => "llama2";

    public override IReadOnlyList<string> FormatSegments(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string system = string.Join("\n", messages.Where(m => m.Role == ChatRole.System).Select(TextOf).Where(t => t.Length > 0));
        var segments = new List<string>();
        var user = new StringBuilder();
        string? assistant = null;
        foreach (ChatMessage message in messages)
        {
            if (message.Role == ChatRole.System) continue;
            if (message.Role == ChatRole.Assistant)
            {
                assistant = assistant is null ? TextOf(message) : assistant + "\n" + TextOf(message);
                continue;
            }
            if (assistant is not null) { segments.Add(Exchange(system, segments.Count, user.ToString(), assistant) + " "); user.Clear(); assistant = null; }
            if (user.Length > 0) user.Append('\n');
            user.Append(TextOf(message));
        }
        segments.Add(Exchange(system, segments.Count, user.ToString(), assistant));
        return segments;
    }

    private static string Exchange(string system, int index, string user, string? assistant)
    {
        string sys = index == 0 && system.Length > 0 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n" : "";
        string inst = $"[INST] {sys}{user} [/INST]";
        return assistant is null ? inst : $"{inst} {assistant}";
    }
}

/// <summary>A role-prefixed plain-text transcript for models without a chat format.</summary>
internal sealed class PlainChatTemplate : ChatTemplate
{
    public override string Name => "plain";

    public override IReadOnlyList<string> StopSequences { get; } = ["\nUser:"];

    public override IReadOnlyList<string> FormatSegments(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var text = new StringBuilder();
        bool endsWithAssistant = false;
        foreach (ChatMessage message in messages)
        {
            string role = message.Role == ChatRole.System ? "System" : message.Role == ChatRole.Assistant ? "Assistant" : "User";
            text.Append(role).Append(": ").Append(TextOf(message)).Append('\n');
            endsWithAssistant = message.Role == ChatRole.Assistant;
        }
        if (endsWithAssistant) text.Length--; // the model continues the assistant's last message
        else text.Append("Assistant:");
        return [text.ToString()];
    }
}
