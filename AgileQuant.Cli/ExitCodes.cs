namespace AgileQuant.Cli;

/// <summary>Process exit codes of <c>agilequant</c> (documented in the README).</summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Success = 0;

    /// <summary>The input was refused: a missing or malformed file, a bad argument value, a prompt too long.</summary>
    public const int InvalidInput = 1;

    /// <summary>The command line could not be parsed (unknown command or option, missing required option).</summary>
    public const int Usage = 2;

    /// <summary>A check failed (e.g. <c>selftest</c> found a kernel that disagrees with its scalar twin).</summary>
    public const int CheckFailed = 3;

    /// <summary>Cancelled by the user (Ctrl+C).</summary>
    public const int Cancelled = 130;

    /// <summary>An unexpected internal error (a bug: please report it with <c>--verbose</c> output).</summary>
    public const int InternalError = 70;

    /// <summary>The exit codes as shown at the end of <c>agilequant --help</c> (and in the README).</summary>
    public const string HelpText = """
        Exit codes:
          0   success
          1   input refused (missing or malformed file, bad value, prompt too long)
          2   command line not understood (unknown command or option, missing required option)
          3   a check failed (selftest: a kernel disagrees with its scalar twin; stress: a run failed or differed)
          70  internal error (a bug: rerun with --verbose for the stack trace and report it)
          130 cancelled (Ctrl+C)
        """;
}
