using System.Text;
using AgileQuant.Models;

namespace AgileQuant.Cli;

/// <summary>Reads text that must be UTF-8, refusing invalid bytes with a message instead of replacing them.</summary>
internal static class Utf8Text
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The file's text; <paramref name="what"/> names it in errors (e.g. <c>--prompt-file</c>).</summary>
    public static string ReadFile(string path, string what)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) throw new InvalidOptionException($"{what} {path} does not exist.");
        // The readers' guarded path: regular files only (a FIFO or /dev/zero is refused), at most a text corpus's cap.
        return Decode(GuardedFile.ReadAllBytes(path, GuardedFile.TextCorpusBytes), $"{what} {path}");
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
