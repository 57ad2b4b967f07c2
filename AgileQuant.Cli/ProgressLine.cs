using System.Diagnostics;

namespace AgileQuant.Cli;

/// <summary>
/// A progress bar on stderr, redrawn in place; shown only when stderr is a terminal and the command line has no
/// <c>--json</c> (<see cref="Suppressed"/>), so logs and scripts see no progress noise and stdout stays clean.
/// </summary>
internal sealed class ProgressLine : IDisposable
{
    private readonly string _label;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _shown = !Console.IsErrorRedirected && !Suppressed;
    private readonly object _gate = new();
    private long _lastDrawMs = -1000;
    private bool _drawn;

    public ProgressLine(string label) => _label = label;

    /// <summary>Hides every progress bar (set by Program when the command line asks for --json).</summary>
    public static bool Suppressed { get; set; }

    /// <summary>Shows <paramref name="done"/> of <paramref name="total"/> with an extra note.</summary>
    public void Report(long done, long total, string note = "")
    {
        if (!_shown) return;
        lock (_gate)
        {
            double fraction = total > 0 ? (double)done / total : 0;
            long now = _clock.ElapsedMilliseconds;
            if (now - _lastDrawMs < 100 && done < total) return;
            _lastDrawMs = now;
            string eta = fraction > 0 && done < total ? $", ETA {TimeSpan.FromSeconds(now / 1000.0 * (1 - fraction) / fraction):mm\\:ss}" : "";
            string text = $"{_label}: [{Bar(fraction)}] {done}/{total} {note} {now / 1000.0:F1}s{eta}";
            Console.Error.Write("\r" + text.PadRight(100));
            _drawn = true;
        }
    }

    private static string Bar(double fraction)
    {
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * 24);
        return new string('#', filled) + new string('.', 24 - filled);
    }

    public void Dispose()
    {
        if (_drawn) Console.Error.WriteLine();
    }
}
