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
        catch (CommandLineUsageException e)
        {
            Console.Error.WriteLine("agilequant: " + e.Message);
            Console.Error.WriteLine("Run 'agilequant " + parse.CommandResult.Command.Name + " --help' for usage.");
            return ExitCodes.Usage;
        }
        catch (Exception e) when (e is AgileQuantException or ArgumentException or IOException or UnauthorizedAccessException or PlatformNotSupportedException
                                   or InvalidOptionException or System.Text.DecoderFallbackException)
        {
            Console.Error.WriteLine("agilequant: error: " + OneLine(e));
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InvalidInput;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("agilequant: internal error: " + OneLine(e) + (verbose ? "" : " (run with --verbose for details)"));
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InternalError;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>
    /// The exception's message as one line: an <see cref="ArgumentException"/>'s appended <c>(Parameter 'x')</c> and
    /// <c>Actual value was …</c> lines dropped (the messages already say what was expected and found).
    /// </summary>
    public static string OneLine(Exception e)
    {
        string message = e.Message;
        if (e is ArgumentException { ParamName: { } name })
        {
            int actual = message.IndexOf(Environment.NewLine + "Actual value was", StringComparison.Ordinal);
            if (actual >= 0) message = message[..actual];
            string suffix = $" (Parameter '{name}')";
            if (message.EndsWith(suffix, StringComparison.Ordinal)) message = message[..^suffix.Length];
        }
        return message.ReplaceLineEndings(" ").Trim();
    }
}

/// <summary>A bad option value, found before any work starts (exit code 1); the message names the option.</summary>
internal sealed class InvalidOptionException(string message) : Exception(message);

/// <summary>The command line lacks something only the command can tell (e.g. neither of two alternative options): exit code 2.</summary>
internal sealed class CommandLineUsageException(string message) : Exception(message);
