namespace AgileQuant.Core.Evaluation;

/// <summary>Splits evaluation text files into documents.</summary>
public static class TextCorpus
{
    /// <summary>
    /// Splits <paramref name="text"/> at every <paramref name="separator"/> (none: one document), trims
    /// surrounding whitespace from each document and drops empty ones.
    /// </summary>
    public static IReadOnlyList<string> SplitDocuments(string text, string? separator)
    {
        ArgumentNullException.ThrowIfNull(text);
        IEnumerable<string> parts = string.IsNullOrEmpty(separator) ? [text] : text.Split(separator);
        return parts.Select(p => p.Trim()).Where(p => p.Length > 0).ToArray();
    }
}
