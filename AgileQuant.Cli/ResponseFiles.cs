using System.CommandLine.Parsing;
using AgileQuant.Core;
using AgileQuant.Models;

namespace AgileQuant.Cli;

/// <summary>
/// Expands <c>@FILE</c> arguments (response files) before the command line is parsed, in place of System.CommandLine's own
/// expansion, which follows a file that includes itself until the stack overflows. Each line of a response file is split
/// as a command line is (double quotes keep a prompt with spaces whole; a line starting with <c>#</c> is a comment), and
/// an <c>@FILE</c> on it is expanded in turn, at most <see cref="MaxDepth"/> files deep and never into a file already
/// being expanded. Files are read through the readers' guarded path (regular files only, at most
/// <see cref="GuardedFile.ResponseFileBytes"/> bytes). Arguments after <c>--</c> are never expanded.
/// </summary>
internal static class ResponseFiles
{
    /// <summary>Most response files open at once (one including the next).</summary>
    public const int MaxDepth = 8;

    /// <summary>Most arguments a command line may expand to.</summary>
    public const int MaxArguments = 1 << 16;

    /// <summary>Most response files read for one command line (a file may name another many times).</summary>
    public const int MaxFilesRead = 1024;

    /// <summary>The arguments with every <c>@FILE</c> replaced by the arguments in that file.</summary>
    /// <exception cref="AgileQuantException">A response file is missing, special, too large, too deep, includes itself, or expands to too many arguments.</exception>
    public static List<string> Expand(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var expansion = new Expansion();
        bool literal = false;
        foreach (string arg in args)
        {
            if (!literal && arg == "--") literal = true;
            if (literal) Add(expansion.Arguments, arg);
            else Expand(arg, expansion);
        }
        return expansion.Arguments;
    }

    /// <summary>The arguments so far, the files being expanded (outermost first), and how many files were read.</summary>
    private sealed class Expansion
    {
        public List<string> Arguments { get; } = [];

        public List<string> Open { get; } = [];

        public int FilesRead { get; set; }
    }

    private static void Expand(string arg, Expansion expansion)
    {
        List<string> open = expansion.Open;
        if (arg.Length < 2 || arg[0] != '@')
        {
            Add(expansion.Arguments, arg);
            return;
        }
        string path = arg[1..], fullPath;
        try
        {
            fullPath = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or IOException)
        {
            // A NUL byte or an over-long name: still one line, naming where it came from.
            throw new AgileQuantException($"Response file path '{Printable(path)}' is not a valid path: {e.Message}"
                + (open.Count > 0 ? $" (named in {open[^1]})." : ""));
        }
        string chain = string.Join(" → ", open.Append(fullPath).Select(p => "@" + Path.GetFileName(p)));
        if (open.Contains(fullPath, StringComparer.Ordinal))
            throw new AgileQuantException($"Response file {fullPath} includes itself ({chain}).");
        if (open.Count == MaxDepth)
            throw new AgileQuantException($"Response file {fullPath} is nested more than {MaxDepth} files deep ({chain}).");
        if (!File.Exists(fullPath) && !Directory.Exists(fullPath))
            throw new AgileQuantException($"Response file not found: {fullPath}" + (open.Count > 0 ? $" (named in {open[^1]})." : "."));
        if (++expansion.FilesRead > MaxFilesRead)
            throw new AgileQuantException($"The command line names more than {MaxFilesRead} response files ({chain}).");
        open.Add(fullPath);
        foreach (string line in GuardedFile.ReadAllLines(fullPath, GuardedFile.ResponseFileBytes))
        {
            string trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed[0] == '#') continue;
            foreach (string word in CommandLineParser.SplitCommandLine(trimmed)) Expand(word, expansion);
        }
        open.RemoveAt(open.Count - 1);
    }

    // Control characters (a NUL, a line break) shown as \uXXXX, so the error stays one readable line.
    private static string Printable(string text) =>
        string.Concat(text.Select(c => char.IsControl(c) ? $"\\u{(int)c:X4}" : c.ToString()));

    private static void Add(List<string> expanded, string arg)
    {
        if (expanded.Count == MaxArguments)
            throw new AgileQuantException($"The command line expands to more than {MaxArguments} arguments (through its response files).");
        expanded.Add(arg);
    }
}
