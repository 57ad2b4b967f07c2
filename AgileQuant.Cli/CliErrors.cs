using System.CommandLine;
using AgileQuant.Core;

namespace AgileQuant.Cli;

/// <summary>Turns exceptions into one friendly line on stderr and an exit code; stack traces only with --verbose.</summary>
internal static class CliErrors
{
    public static readonly Option<bool> VerboseOption = new("--verbose") { Description = "Print stack traces of errors.", Recursive = true };

    /// <summary>Runs <paramref name="body"/> and maps its exceptions to exit codes.</summary>
    public static int Run(ParseResult parse, Func<CancellationToken, int> body)
    {
        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancellation.Cancel(); };
        Console.CancelKeyPress += onCancel;
        bool verbose = parse.GetValue(VerboseOption);
        try
        {
            return body(cancellation.Token);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("agilequant: cancelled");
            return ExitCodes.Cancelled;
        }
        catch (Exception e) when (e is AgileQuantException or ArgumentException or IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            Console.Error.WriteLine("agilequant: error: " + e.Message);
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InvalidInput;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("agilequant: internal error: " + e.Message + (verbose ? "" : " (run with --verbose for details)"));
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InternalError;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
