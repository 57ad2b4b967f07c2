namespace AgileQuant.Core;

/// <summary>
/// Base type of every error AgileQuant reports on purpose: bad input files, bad arguments to a model,
/// exhausted limits. Anything else escaping the library is a bug.
/// </summary>
public class AgileQuantException : Exception
{
    /// <summary>Creates the exception with a message that says what was expected and what was found.</summary>
    public AgileQuantException(string message) : base(message) { }

    /// <summary>Creates the exception wrapping the error that caused it.</summary>
    public AgileQuantException(string message, Exception inner) : base(message, inner) { }
}
