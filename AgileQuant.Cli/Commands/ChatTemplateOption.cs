using System.CommandLine;
using AgileQuant.Models.ChatClient;

namespace AgileQuant.Cli.Commands;

/// <summary><c>--chat-template NAME</c>: a named chat format instead of the one recognised in the model's own template.</summary>
internal sealed class ChatTemplateOption(string description)
{
    public Option<string?> Option { get; } = new("--chat-template") { Description = description + " Names: " + string.Join(", ", ChatTemplate.Names) + "." };

    public void AddTo(Command command) => command.Options.Add(Option);

    /// <summary>The named format, or null when the option is absent; an unknown name is a usage error.</summary>
    public ChatTemplate? Read(ParseResult parse)
    {
        string? name = parse.GetValue(Option);
        if (name is null) return null;
        try
        {
            return ChatTemplate.FromName(name);
        }
        catch (ArgumentException)
        {
            throw new InvalidOptionException($"--chat-template: unknown format '{name}'; expected one of {string.Join(", ", ChatTemplate.Names)}.");
        }
    }
}
