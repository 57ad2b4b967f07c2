using System.CommandLine;

namespace AgileQuant.Cli.Commands;

/// <summary>Where the prompt comes from: <c>--prompt TEXT</c>, <c>--prompt-file PATH</c>, or standard input (<c>--prompt -</c> or <c>--prompt-file -</c>); UTF-8 only.</summary>
internal sealed class PromptOptions
{
    public Option<string?> Prompt { get; } = new("--prompt") { Description = "The text to continue; - reads it from standard input." };
    public Option<string?> PromptFile { get; } = new("--prompt-file") { Description = "Read the prompt from this UTF-8 file (- = standard input)." };

    public void AddTo(Command command)
    {
        command.Options.Add(Prompt);
        command.Options.Add(PromptFile);
    }

    /// <summary>The prompt text, read and checked (exactly one source, valid UTF-8, not empty).</summary>
    public string Read(ParseResult parse)
    {
        string? text = parse.GetValue(Prompt), file = parse.GetValue(PromptFile);
        if (text is not null && file is not null) throw new CommandLineUsageException("pass either --prompt or --prompt-file, not both.");
        if (text is null && file is null) throw new CommandLineUsageException("a prompt is required: --prompt TEXT, --prompt-file PATH, or --prompt - to read standard input.");
        string prompt = text == "-" || file == "-" ? Utf8Text.ReadStandardInput()
            : file is not null ? Utf8Text.ReadFile(file, "--prompt-file")
            : Utf8Text.RequireValidArgument(text!, "--prompt");
        if (prompt.Length == 0) throw new InvalidOptionException("The prompt is empty.");
        return prompt;
    }
}
