using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using AgileQuant.Core;
using Microsoft.Extensions.AI;

namespace AgileQuant.Models.ChatClient;

/// <summary>
/// The chat formats AgileQuant writes, and how a model's own template (GGUF <c>tokenizer.chat_template</c>, Hugging Face
/// <c>chat_template</c>) is recognised: by marker texts in the template, in the order llama.cpp's
/// <c>llm_chat_detect_template</c> tests them (the first row whose test passes names the format; a template text that is
/// a format's name picks that format). This is the one place to add a chat format (docs/architecture.md, "Chat formats").
/// </summary>
/// <remarks>
/// Formats write no BOS: the tokenizer adds it where its model wants one, as llama.cpp does. Where a model's template
/// renders differently from llama.cpp's built-in format, the template wins (a default system prompt such as Qwen2.5's,
/// Llama 3.1's "Cutting Knowledge Date" system turn, a Phi-3 template without system turns, the Llama-2-chat spacing).
/// Rows whose format AgileQuant does not write keep llama.cpp's order, so that a template is never taken for a later
/// format it only resembles.
/// </remarks>
internal static class ChatFormats
{
    /// <summary>One format: its name, its test on a template's text, and how to build it (null: recognised, not written).</summary>
    /// <param name="Name">The format's name (llama.cpp's where it has one).</param>
    /// <param name="Recognises">Whether a template's text is this format's.</param>
    /// <param name="Create">Builds the template from the model's template text (null when chosen by name), or null when AgileQuant does not write this format.</param>
    private sealed record Row(string Name, Func<string, bool> Recognises, Func<string?, ChatTemplate>? Create);

    private static bool IsInst(string t) => t.StartsWith("mistral", StringComparison.Ordinal) || t.Contains("[INST]", StringComparison.Ordinal);

    // Mistral's official v1, v3 and v3-tekken templates (llama.cpp: "' [INST] ' + system_message" or "[AVAILABLE_TOOLS]").
    private static bool IsOfficialMistral(string t) =>
        IsInst(t) && !t.Contains("[SYSTEM_PROMPT]", StringComparison.Ordinal)
        && (t.Contains("' [INST] ' + system_message", StringComparison.Ordinal) || t.Contains("[AVAILABLE_TOOLS]", StringComparison.Ordinal));

    private static bool Has(string t, params string[] markers) => markers.All(m => t.Contains(m, StringComparison.Ordinal));

    private static readonly Row[] Rows =
    [
        new("phi4", t => Has(t, "<|im_start|>", "<|im_sep|>"), null),
        new("smolvlm", t => Has(t, "<|im_start|>", "<end_of_utterance>"), null),
        new("chatml", t => Has(t, "<|im_start|>"), t => new ChatMLChatTemplate(t is null ? null : ChatMLDefaultSystemPrompt(t), t is not null && Has(t, "</think>", "reasoning_content"))),
        new("mistral-v7", t => IsInst(t) && Has(t, "[SYSTEM_PROMPT]"), _ => new MistralV7ChatTemplate()),
        new("mistral-v1", t => IsOfficialMistral(t) && Has(t, " [INST]"), _ => new MistralChatTemplate("mistral-v1")),
        new("mistral-v3-tekken", t => IsOfficialMistral(t) && Has(t, "\"[INST]\""), _ => new MistralChatTemplate("mistral-v3-tekken")),
        new("mistral-v3", IsOfficialMistral, _ => new MistralChatTemplate("mistral-v3")),
        // Llama-2-chat (llama.cpp's llama2-sys variants): the shipped format, as Meta's template renders it.
        new("llama2", t => IsInst(t) && Has(t, "<<SYS>>"), _ => ChatTemplate.Llama2),
        // [INST] without a system block (llama.cpp's "llama2"; Mistral-7B-Instruct v0.1/v0.2).
        new("inst", IsInst, _ => new InstChatTemplate()),
        new("phi3", t => Has(t, "<|assistant|>", "<|end|>"), t => new Phi3ChatTemplate(t is null || Has(t, "<|system|>"))),
        new("chatglm4", t => Has(t, "[gMASK]<sop>"), null),
        new("falcon3", t => Has(t, "<|assistant|>", "<|user|>"), null),
        new("glmedge", t => Has(t, "<|{{ item['role'] }}|>", "<|begin_of_image|>"), null),
        new("zephyr", t => Has(t, "<|user|>", "<|endoftext|>"), null),
        new("monarch", t => Has(t, "bos_token + message['role']"), null),
        new("gemma", t => Has(t, "<start_of_turn>"), _ => new GemmaChatTemplate()),
        new("orion", t => Has(t, "'\\n\\nAssistant: ' + eos_token"), null),
        new("openchat", t => Has(t, "GPT4 Correct "), null),
        new("vicuna", t => Has(t, "USER: ", "ASSISTANT: "), null),
        new("deepseek", t => Has(t, "### Instruction:", "<|EOT|>"), null),
        new("command-r", t => Has(t, "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"), null),
        new("llama3", t => Has(t, "<|start_header_id|>", "<|end_header_id|>"), t => new Llama3ChatTemplate(t is null ? null : Llama3SystemPreamble(t))),
        new("plain", _ => false, _ => ChatTemplate.Plain),
    ];

    /// <summary>The names of the formats AgileQuant writes.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Rows.Where(r => r.Create is not null).Select(r => r.Name)];

    /// <summary>The format named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static ChatTemplate? FindByName(string name)
    {
        Row? row = Rows.FirstOrDefault(r => r.Create is not null && string.Equals(r.Name, name, StringComparison.OrdinalIgnoreCase));
        return row?.Create!(null);
    }

    /// <summary>
    /// The format of a model's template text: a format's name, else the first row recognising it. Null with
    /// <paramref name="recognisedAs"/> set when llama.cpp knows the format but AgileQuant does not write it; null with it
    /// unset when no row recognises the text.
    /// </summary>
    public static ChatTemplate? Recognise(string template, out string? recognisedAs)
    {
        ArgumentNullException.ThrowIfNull(template);
        recognisedAs = null;
        if (FindByName(template) is ChatTemplate named) return named;
        Row? row = Rows.FirstOrDefault(r => r.Recognises(template));
        if (row is null) return null;
        recognisedAs = row.Name;
        return row.Create?.Invoke(template);
    }

    /// <summary>One line describing why <paramref name="template"/> has no format, for error messages.</summary>
    public static string Unrecognised(string template, string? recognisedAs)
    {
        string excerpt = template.Length > 60 ? template[..60] + "…" : template;
        excerpt = excerpt.Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
        string why = recognisedAs is null
            ? "is not one AgileQuant recognises"
            : $"is llama.cpp's '{recognisedAs}' format, which AgileQuant does not write";
        return $"the chat template \"{excerpt}\" {why}; choose a named format instead ({string.Join(", ", Names)})";
    }

    // A ChatML template's fixed system turn for conversations without one (Qwen2.5: "You are Qwen, created by Alibaba
    // Cloud. You are a helpful assistant."): a string literal '<|im_start|>system\n…<|im_end|>' with no expression inside.
    private static string? ChatMLDefaultSystemPrompt(string template)
    {
        Match m = Regex.Match(template, @"'<\|im_start\|>system\\n([^'""{}\\<]+)<\|im_end\|>\\n'");
        return m.Success ? m.Groups[1].Value : null;
    }

    // Llama 3.1/3.2/3.3 templates always open with a system turn: "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    // before the system message; the date is the template's date_string default, or today's (strftime_now("%d %b %Y")).
    private static string? Llama3SystemPreamble(string template)
    {
        Match cutoff = Regex.Match(template, @"Cutting Knowledge Date: ([^\\""'\n]+)\\n");
        if (!cutoff.Success) return null;
        Match date = Regex.Match(template, @"set date_string = [""']([^""']+)[""']");
        string today = date.Success ? date.Groups[1].Value : DateTime.UtcNow.ToString("dd MMM yyyy", CultureInfo.InvariantCulture);
        return $"Cutting Knowledge Date: {cutoff.Groups[1].Value}\nToday Date: {today}\n\n";
    }
}

/// <summary>
/// A format written as one text with the model's special tokens spelled out (<c>&lt;|im_start|&gt;</c>, <c>&lt;/s&gt;</c>):
/// encoded with special tokens parsed, ending in the assistant's header (llama.cpp's <c>add_ass</c>).
/// </summary>
internal abstract class SpecialTokenChatTemplate(string name) : ChatTemplate
{
    public override string Name => name;

    internal override bool WritesSpecialTokens => true;

    public override IReadOnlyList<string> FormatSegments(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var text = new StringBuilder();
        Format(messages, text);
        return [text.ToString()];
    }

    /// <summary>Appends the prompt for <paramref name="messages"/> to <paramref name="text"/>.</summary>
    protected abstract void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text);

    /// <summary>The role as templates name it: <c>system</c>, <c>user</c>, <c>assistant</c>, <c>tool</c> or the caller's own.</summary>
    protected static string RoleOf(ChatMessage message) => message.Role.Value;

    /// <summary>The message's text as given (its text contents joined).</summary>
    protected static string ContentOf(ChatMessage message) => message.Text;

    /// <summary>The message's text without surrounding whitespace (Jinja's <c>trim</c>, llama.cpp's <c>trim</c>).</summary>
    protected static string TrimmedContentOf(ChatMessage message) => message.Text.Trim();
}

/// <summary>
/// ChatML (Qwen2/2.5/3 and many others): <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c>, with the template's
/// default system turn when the conversation has none; for reasoning templates (Qwen3), replies before the last user
/// message keep only the text after their <c>&lt;/think&gt;</c>, as the template writes them.
/// </summary>
internal sealed class ChatMLChatTemplate(string? defaultSystemPrompt, bool dropsEarlierReasoning) : SpecialTokenChatTemplate("chatml")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        if (defaultSystemPrompt is not null && (messages.Count == 0 || messages[0].Role != ChatRole.System))
            text.Append("<|im_start|>system\n").Append(defaultSystemPrompt).Append("<|im_end|>\n");
        int lastUser = -1;
        for (int i = 0; i < messages.Count; i++) if (messages[i].Role == ChatRole.User) lastUser = i;
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage m = messages[i];
            string content = ContentOf(m);
            int think = content.LastIndexOf("</think>", StringComparison.Ordinal);
            if (dropsEarlierReasoning && m.Role == ChatRole.Assistant && i < lastUser && think >= 0)
                content = content[(think + "</think>".Length)..].TrimStart('\n');
            text.Append("<|im_start|>").Append(RoleOf(m)).Append('\n').Append(content).Append("<|im_end|>\n");
        }
        text.Append("<|im_start|>assistant\n");
    }
}

/// <summary>Llama 3 headers: <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;</c>, contents trimmed; Llama 3.1+ templates' system preamble when given.</summary>
internal sealed class Llama3ChatTemplate(string? systemPreamble) : SpecialTokenChatTemplate("llama3")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        int first = 0;
        if (systemPreamble is not null)
        {
            string system = messages.Count > 0 && messages[0].Role == ChatRole.System ? TrimmedContentOf(messages[first++]) : "";
            Turn(text, "system", systemPreamble + system);
        }
        for (int i = first; i < messages.Count; i++) Turn(text, RoleOf(messages[i]), TrimmedContentOf(messages[i]));
        text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    private static void Turn(StringBuilder text, string role, string content) =>
        text.Append("<|start_header_id|>").Append(role).Append("<|end_header_id|>\n\n").Append(content).Append("<|eot_id|>");
}

/// <summary>Phi-3: <c>&lt;|{role}|&gt;\n{content}&lt;|end|&gt;\n</c>; system turns dropped when the model's template has none (Phi-3-mini-4k's first template).</summary>
internal sealed class Phi3ChatTemplate(bool systemTurns) : SpecialTokenChatTemplate("phi3")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        foreach (ChatMessage m in messages)
        {
            if (m.Role == ChatRole.System && !systemTurns) continue;
            text.Append("<|").Append(RoleOf(m)).Append("|>\n").Append(ContentOf(m)).Append("<|end|>\n");
        }
        text.Append("<|assistant|>\n");
    }
}

/// <summary>Gemma turns: <c>&lt;start_of_turn&gt;{user|model}\n{content}&lt;end_of_turn&gt;\n</c>, contents trimmed, system text folded into the next user turn.</summary>
internal sealed class GemmaChatTemplate() : SpecialTokenChatTemplate("gemma")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        string system = "";
        foreach (ChatMessage m in messages)
        {
            if (m.Role == ChatRole.System)
            {
                system += TrimmedContentOf(m);
                continue;
            }
            string role = m.Role == ChatRole.Assistant ? "model" : RoleOf(m);
            text.Append("<start_of_turn>").Append(role).Append('\n');
            if (system.Length > 0 && role != "model")
            {
                text.Append(system).Append("\n\n");
                system = "";
            }
            text.Append(TrimmedContentOf(m)).Append("<end_of_turn>\n");
        }
        text.Append("<start_of_turn>model\n");
    }
}

/// <summary>
/// <c>[INST] {user} [/INST]{assistant}&lt;/s&gt;</c> without a system block (llama.cpp's <c>llama2</c>; Mistral-7B-Instruct
/// v0.1/v0.2): a system message's text opens the turn it falls in, followed by a newline.
/// </summary>
internal sealed class InstChatTemplate() : SpecialTokenChatTemplate("inst")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        bool insideTurn = true;
        text.Append("[INST] ");
        foreach (ChatMessage m in messages)
        {
            if (!insideTurn)
            {
                insideTurn = true;
                text.Append("[INST] ");
            }
            if (m.Role == ChatRole.System) text.Append(ContentOf(m)).Append('\n');
            else if (m.Role == ChatRole.Assistant)
            {
                text.Append(ContentOf(m)).Append("</s>");
                insideTurn = false;
            }
            else text.Append(ContentOf(m)).Append(" [/INST]");
        }
    }
}

/// <summary>
/// Mistral's official v1, v3 and v3-tekken formats: <c>[INST]</c> turns with the system text before the user's (v1 puts a
/// space before <c>[INST]</c> and <c>[/INST]</c>; v3-tekken none after <c>[INST]</c> and before the reply; v3 trims replies).
/// </summary>
internal sealed class MistralChatTemplate(string version) : SpecialTokenChatTemplate(version)
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        string leading = Name == "mistral-v1" ? " " : "";
        string trailing = Name == "mistral-v3-tekken" ? "" : " ";
        bool trimReplies = Name == "mistral-v3";
        bool insideTurn = false;
        foreach (ChatMessage m in messages)
        {
            if (!insideTurn)
            {
                text.Append(leading).Append("[INST]").Append(trailing);
                insideTurn = true;
            }
            if (m.Role == ChatRole.System) text.Append(ContentOf(m)).Append("\n\n");
            else if (m.Role == ChatRole.Assistant)
            {
                text.Append(trailing).Append(trimReplies ? TrimmedContentOf(m) : ContentOf(m)).Append("</s>");
                insideTurn = false;
            }
            else text.Append(ContentOf(m)).Append(leading).Append("[/INST]");
        }
    }
}

/// <summary>Mistral's v7 format: <c>[SYSTEM_PROMPT] {system}[/SYSTEM_PROMPT][INST] {user}[/INST] {assistant}&lt;/s&gt;</c>.</summary>
internal sealed class MistralV7ChatTemplate() : SpecialTokenChatTemplate("mistral-v7")
{
    protected override void Format(IReadOnlyList<ChatMessage> messages, StringBuilder text)
    {
        foreach (ChatMessage m in messages)
        {
            if (m.Role == ChatRole.System) text.Append("[SYSTEM_PROMPT] ").Append(ContentOf(m)).Append("[/SYSTEM_PROMPT]");
            else if (m.Role == ChatRole.Assistant) text.Append(' ').Append(ContentOf(m)).Append("</s>");
            else text.Append("[INST] ").Append(ContentOf(m)).Append("[/INST]");
        }
    }
}

/// <summary>Reads the chat template a model's files carry.</summary>
internal static class ModelChatTemplate
{
    /// <summary>GGUF metadata key of the template.</summary>
    public const string GgufKey = "tokenizer.chat_template";

    /// <summary>
    /// A Hugging Face folder's template: <c>chat_template.jinja</c>, else <c>tokenizer_config.json</c>'s <c>chat_template</c>
    /// (a string, or a list of <c>{name, template}</c> of which the one named <c>default</c>); null when it has none.
    /// </summary>
    /// <exception cref="ModelFormatException">tokenizer_config.json is not valid JSON or its chat_template is neither form.</exception>
    public static (string Text, string Origin)? ReadHfDirectory(string directory)
    {
        string jinja = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(jinja)) return (File.ReadAllText(jinja), jinja);
        string config = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(config)) return null;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(config));
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("chat_template", out System.Text.Json.JsonElement template)
                || template.ValueKind == System.Text.Json.JsonValueKind.Null) return null;
            string origin = config + " chat_template";
            if (template.ValueKind == System.Text.Json.JsonValueKind.String) return (template.GetString()!, origin);
            if (template.ValueKind == System.Text.Json.JsonValueKind.Array)
                foreach (System.Text.Json.JsonElement named in template.EnumerateArray())
                    if (named.ValueKind == System.Text.Json.JsonValueKind.Object
                        && named.TryGetProperty("name", out var name) && name.ValueKind == System.Text.Json.JsonValueKind.String && name.GetString() == "default"
                        && named.TryGetProperty("template", out var text) && text.ValueKind == System.Text.Json.JsonValueKind.String)
                        return (text.GetString()!, origin);
            throw new ModelFormatException(config, null, $"chat_template: expected a string or a list of {{name, template}} with one named 'default', found {template.ValueKind}");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ModelFormatException(config, null, $"expected well-formed JSON, found an error: {e.Message}", e);
        }
    }

    /// <summary>The template of a model: <paramref name="text"/> recognised, or one line naming it and <paramref name="origin"/> when it is not.</summary>
    /// <exception cref="AgileQuantException">No format recognises the template.</exception>
    public static ChatTemplate Recognise(string text, string origin)
    {
        return ChatFormats.Recognise(text, out string? recognisedAs) is ChatTemplate template
            ? template
            : throw new AgileQuantException($"{origin}: {ChatFormats.Unrecognised(text, recognisedAs)} (AgileQuantChatClientOptions.Template, ChatTemplate.FromName).");
    }
}
