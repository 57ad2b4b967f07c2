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
    /// The template a model expects: <see cref="Llama2"/> for the llama family with a 32,000-token SentencePiece
    /// vocabulary (the Llama 2 tokenizer), <see cref="Plain"/> otherwise.
    /// </summary>
    public static ChatTemplate ForModel(TransformerConfig config, Tokenizer? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(config);
        bool sentencePiece = tokenizer is ScoredMergeTokenizer or SentencePieceTokenizer;
        bool llama2 = string.Equals(config.Family, "llama", StringComparison.OrdinalIgnoreCase) && config.VocabSize == 32000 && sentencePiece;
        return llama2 ? Llama2 : Plain;
    }

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
