using Microsoft.VisualStudio.TestPlatform.ObjectModel;
using Microsoft.VisualStudio.TestPlatform.ObjectModel.Client;

namespace AgileQuant.TestLogger;

/// <summary>
/// A vstest logger that prints why each test was skipped: <c>dotnet test</c>'s console logger at its default
/// (minimal) verbosity names skipped tests without their reason. Enabled for AgileQuant.Tests by its runsettings file;
/// prints one line per skipped test at the end of the run, grouped by reason.
/// </summary>
[FriendlyName(FriendlyNameValue)]
[ExtensionUri(ExtensionUriValue)]
public sealed class SkipReasonLogger : ITestLogger
{
    /// <summary>The name runsettings and <c>--logger</c> use.</summary>
    public const string FriendlyNameValue = "skip-reasons";

    /// <summary>The logger's extension URI.</summary>
    public const string ExtensionUriValue = "logger://agilequant/skip-reasons";

    private readonly List<(string Test, string Reason)> _skipped = [];

    /// <summary>Subscribes to test results and the end of the run.</summary>
    public void Initialize(TestLoggerEvents events, string testRunDirectory)
    {
        ArgumentNullException.ThrowIfNull(events);
        events.TestResult += (_, e) =>
        {
            if (e.Result.Outcome != TestOutcome.Skipped) return;
            string reason = !string.IsNullOrWhiteSpace(e.Result.ErrorMessage) ? e.Result.ErrorMessage
                : e.Result.Messages.Select(m => m.Text).FirstOrDefault(t => !string.IsNullOrWhiteSpace(t)) ?? "no reason given";
            lock (_skipped) _skipped.Add((e.Result.TestCase.DisplayName, reason.ReplaceLineEndings(" ").Trim()));
        };
        events.TestRunComplete += (_, _) =>
        {
            lock (_skipped)
            {
                if (_skipped.Count == 0) return;
                Console.WriteLine($"Skipped {_skipped.Count} tests, and why:");
                foreach (IGrouping<string, (string Test, string Reason)> group in _skipped.GroupBy(s => s.Reason).OrderByDescending(g => g.Count()))
                {
                    string[] names = group.Select(s => s.Test).Distinct().Order(StringComparer.Ordinal).ToArray();
                    string shown = string.Join(", ", names.Take(6)) + (names.Length > 6 ? $", … ({names.Length - 6} more)" : "");
                    Console.WriteLine($"  {group.Count(),4} × {group.Key.TrimEnd('.')} — {shown}");
                }
            }
        };
    }
}
