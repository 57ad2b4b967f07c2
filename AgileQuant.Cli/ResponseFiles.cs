using System.Text;

namespace AgileQuant.Cli;

/// <summary>
/// <c>@FILE</c> on the command line: the file's tokens replace it. Tokens are separated by white space; a token in
/// double or single quotes is kept whole (a quoted prompt stays one argument), <c>\"</c> and <c>\\</c> escape inside
/// double quotes, and a line starting with <c>#</c> is a comment. A response file cannot name another (<c>@</c> at the
/// start of one of its tokens is refused), so expansion cannot recurse. The file must be UTF-8.
/// </summary>
internal static class ResponseFiles
{
    /// <summary>System.CommandLine's response-file hook (<see cref="System.CommandLine.Parsing.TryReplaceToken"/>).</summary>
    public static bool TryReadTokens(string tokenToReplace, out IReadOnlyList<string>? replacementTokens, out string? errorMessage)
    {
        replacementTokens = null;
        string path = tokenToReplace;
        try
        {
            string text = Utf8Text.ReadFile(path, "response file");
            List<string> tokens = Split(text, path);
            string? nested = tokens.FirstOrDefault(t => t.StartsWith('@'));
            if (nested is not null)
            {
                errorMessage = $"response file {path} names another response file ({nested}); response files cannot include each other.";
                return false;
            }
            replacementTokens = tokens;
            errorMessage = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOptionException)
        {
            errorMessage = e is InvalidOptionException ? e.Message : $"cannot read response file {path}: {e.Message}";
            return false;
        }
    }

    /// <summary>Splits response-file text into tokens (quotes kept whole, # comment lines skipped).</summary>
    internal static List<string> Split(string text, string path)
    {
        var tokens = new List<string>();
        foreach (string rawLine in text.Split('\n'))
        {
            string line = rawLine.TrimEnd('\r');
            if (line.TrimStart().StartsWith('#')) continue;
            var current = new StringBuilder();
            bool inToken = false;
            for (int i = 0; i < line.Length; i++)
            {
                char c = line[i];
                if (c is '"' or '\'')
                {
                    char quote = c;
                    int start = i++;
                    inToken = true;
                    for (; i < line.Length && line[i] != quote; i++)
                    {
                        if (quote == '"' && line[i] == '\\' && i + 1 < line.Length && line[i + 1] is '"' or '\\') i++;
                        current.Append(line[i]);
                    }
                    if (i == line.Length) throw new InvalidOptionException($"response file {path}: the quote opened at column {start + 1} of a line is not closed on that line.");
                }
                else if (char.IsWhiteSpace(c))
                {
                    if (inToken) { tokens.Add(current.ToString()); current.Clear(); inToken = false; }
                }
                else
                {
                    current.Append(c);
                    inToken = true;
                }
            }
            if (inToken) tokens.Add(current.ToString());
        }
        return tokens;
    }
}

/// <summary>Reads text that must be UTF-8, refusing invalid bytes with a message instead of replacing them.</summary>
internal static class Utf8Text
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The file's text; <paramref name="what"/> names it in errors (e.g. <c>--prompt-file</c>).</summary>
    public static string ReadFile(string path, string what)
    {
        if (!File.Exists(path)) throw new InvalidOptionException($"{what} {path} does not exist.");
        return Decode(File.ReadAllBytes(path), $"{what} {path}");
    }

    /// <summary>Standard input's bytes as text.</summary>
    public static string ReadStandardInput()
    {
        using Stream input = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        input.CopyTo(buffer);
        return Decode(buffer.ToArray(), "standard input");
    }

    /// <summary>Decodes strictly; a leading byte-order mark is dropped.</summary>
    public static string Decode(byte[] bytes, string source)
    {
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) span = span[3..];
        try
        {
            return Strict.GetString(span);
        }
        catch (DecoderFallbackException e)
        {
            int at = e.Index >= 0 ? e.Index : 0;
            throw new InvalidOptionException($"{source} is not valid UTF-8 text (invalid byte 0x{(at < span.Length ? span[at] : 0):X2} at offset {at}).");
        }
    }

    /// <summary>Refuses a command-line value holding U+FFFD: the runtime puts it where the argument's bytes were not UTF-8.</summary>
    public static string RequireValidArgument(string value, string option) =>
        value.Contains('\uFFFD')
            ? throw new InvalidOptionException($"{option} is not valid UTF-8 text (it holds U+FFFD, the replacement for invalid bytes); pass the text with --prompt-file in UTF-8.")
            : value;
}
