using AgileQuant.Core;

namespace AgileQuant.Models;

/// <summary>
/// A model, checkpoint or tokenizer file is malformed or does not match what it must contain. The
/// message names the file, the tensor (when there is one) and what was expected versus found.
/// </summary>
public sealed class ModelFormatException : AgileQuantException
{
    /// <summary>The file that failed validation.</summary>
    public string FilePath { get; }

    /// <summary>The tensor concerned, if any.</summary>
    public string? TensorName { get; }

    /// <summary>Creates the exception for <paramref name="filePath"/> (and optionally one tensor in it).</summary>
    public ModelFormatException(string filePath, string? tensorName, string problem)
        : base(Format(filePath, tensorName, problem))
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>Creates the exception wrapping a lower-level error.</summary>
    public ModelFormatException(string filePath, string? tensorName, string problem, Exception inner)
        : base(Format(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    private static string Format(string filePath, string? tensorName, string problem) =>
        tensorName is null ? $"{filePath}: {problem}" : $"{filePath}: tensor '{tensorName}': {problem}";
}
