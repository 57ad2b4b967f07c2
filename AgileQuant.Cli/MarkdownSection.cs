namespace AgileQuant.Cli;

/// <summary>
/// A generated section of a markdown file between two marker lines, so that a command can rewrite its own section and keep
/// the rest of the file (e.g. the KV cache sections of docs/accuracy.md and docs/benchmarks.md). AgileQuant.Benchmarks
/// compiles this file too (linked in its project), so both tools write sections one way.
/// </summary>
/// <param name="Begin">The section's first line.</param>
/// <param name="End">The line after the section.</param>
internal sealed record MarkdownSection(string Begin, string End)
{
    /// <summary>Writes <paramref name="section"/> (markers included) into <paramref name="path"/>: in place of the file's section, or at its end.</summary>
    public void WriteInto(string path, string section)
    {
        string text = File.Exists(path) ? File.ReadAllText(path) : "";
        int begin = text.IndexOf(Begin, StringComparison.Ordinal), end = text.IndexOf(End, StringComparison.Ordinal);
        text = begin >= 0 && end > begin
            ? text[..begin] + section + text[(end + End.Length)..].TrimStart('\r', '\n')
            : text + (text.Length > 0 && !text.EndsWith('\n') ? "\n" : "") + (text.Length > 0 ? "\n" : "") + section;
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        File.WriteAllText(path, text);
    }

    /// <summary>
    /// The text in <paramref name="path"/> from the first line starting with <see cref="Begin"/> to the end of the last line
    /// starting with <see cref="End"/> (markers included, every such section: the markers may be the prefixes of several
    /// sections'), followed by a line break; "" when there is none, for a command that rewrites the rest of the file.
    /// </summary>
    public string Existing(string path)
    {
        if (!File.Exists(path)) return "";
        string text = File.ReadAllText(path);
        int begin = text.IndexOf(Begin, StringComparison.Ordinal), end = text.LastIndexOf(End, StringComparison.Ordinal);
        if (begin < 0 || end <= begin) return "";
        int lineEnd = text.IndexOf('\n', end);
        return text[begin..(lineEnd < 0 ? text.Length : lineEnd)].TrimEnd('\r') + Environment.NewLine;
    }
}
