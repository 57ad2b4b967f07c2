namespace AgileQuant.Cli;

/// <summary>
/// A plain-text table for human-readable reports (a header, a rule, aligned columns; cells that parse as numbers are
/// right-aligned). Scripts use each command's <c>--json</c> instead.
/// </summary>
internal sealed class TextTable
{
    private readonly string[] _headers;
    private readonly List<string[]> _rows = [];

    public TextTable(params string[] headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (headers.Length == 0) throw new ArgumentException("A table needs at least one column.", nameof(headers));
        _headers = headers;
    }

    /// <summary>Adds a row; it must have one cell per column.</summary>
    public TextTable Add(params string[] cells)
    {
        ArgumentNullException.ThrowIfNull(cells);
        if (cells.Length != _headers.Length)
            throw new ArgumentException($"Expected {_headers.Length} cells, found {cells.Length}.", nameof(cells));
        _rows.Add(cells);
        return this;
    }

    /// <summary>Writes the table to <paramref name="writer"/>, two spaces between columns.</summary>
    public void WriteTo(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var widths = new int[_headers.Length];
        for (int c = 0; c < widths.Length; c++)
            widths[c] = Math.Max(_headers[c].Length, _rows.Count == 0 ? 0 : _rows.Max(r => r[c].Length));
        writer.WriteLine(Line(_headers, widths, alignNumbers: false).TrimEnd());
        writer.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (string[] row in _rows) writer.WriteLine(Line(row, widths, alignNumbers: true).TrimEnd());
    }

    private static string Line(string[] cells, int[] widths, bool alignNumbers) =>
        string.Join("  ", cells.Select((cell, c) => alignNumbers && LooksNumeric(cell) ? cell.PadLeft(widths[c]) : cell.PadRight(widths[c])));

    // Numbers with optional sign, grouping, decimals, exponent and a unit-less suffix such as % or ×.
    private static bool LooksNumeric(string cell)
    {
        string trimmed = cell.TrimEnd('%', '×', 'x');
        return trimmed.Length > 0 && double.TryParse(trimmed, System.Globalization.NumberStyles.Float | System.Globalization.NumberStyles.AllowThousands,
            System.Globalization.CultureInfo.InvariantCulture, out _);
    }
}
