using System.Diagnostics;

namespace AgileQuant.Cli;

/// <summary>
/// A progress line on stderr: redrawn in place on a terminal, printed every 10% when stderr is redirected,
/// so stdout stays clean for --json output.
/// </summary>
internal sealed class ProgressLine : IDisposable
{
    private readonly string _label;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private readonly object _gate = new();
    private long _lastDrawMs = -1000;
    private int _lastDecile = -1;
    private bool _drawn;

    public ProgressLine(string label) => _label = label;

    /// <summary>Shows <paramref name="done"/> of <paramref name="total"/> with an extra note.</summary>
    public void Report(long done, long total, string note = "")
    {
        lock (_gate)
        {
            double fraction = total > 0 ? (double)done / total : 0;
            long now = _clock.ElapsedMilliseconds;
            string eta = fraction > 0 && done < total ? $", ETA {TimeSpan.FromSeconds(now / 1000.0 * (1 - fraction) / fraction):mm\\:ss}" : "";
            string text = $"{_label}: [{Bar(fraction)}] {done}/{total} {note} {now / 1000.0:F1}s{eta}";
            if (_interactive)
            {
                if (now - _lastDrawMs < 100 && done < total) return;
                _lastDrawMs = now;
                Console.Error.Write("\r" + text.PadRight(100));
                _drawn = true;
            }
            else
            {
                int decile = (int)(fraction * 10);
                if (decile == _lastDecile) return;
                _lastDecile = decile;
                Console.Error.WriteLine(text);
            }
        }
    }

    private static string Bar(double fraction)
    {
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * 24);
        return new string('#', filled) + new string('.', 24 - filled);
    }

    public void Dispose()
    {
        if (_interactive && _drawn) Console.Error.WriteLine();
    }
}
