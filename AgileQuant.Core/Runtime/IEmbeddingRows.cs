namespace AgileQuant.Core.Runtime;

/// <summary>
/// A token-embedding table (Rows, Width) kept in a compact stored form, for example a GGUF file's quantized blocks,
/// whose rows are dequantized when a token is looked up: the table costs its stored bytes, not four bytes per element
/// (docs/architecture.md, "Loading"). A lookup gives exactly the values the whole table dequantized at load would hold.
/// Immutable and thread-safe to share, as the rest of <see cref="TransformerWeights"/>.
/// </summary>
public interface IEmbeddingRows
{
    /// <summary>Number of rows (the vocabulary size).</summary>
    int Rows { get; }

    /// <summary>Elements per row (the embedding width).</summary>
    int Width { get; }

    /// <summary>Bytes the stored form holds.</summary>
    long ByteCount { get; }

    /// <summary>Writes row <paramref name="row"/> dequantized to FP32 into <paramref name="destination"/> (<see cref="Width"/> elements).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="row"/> is outside [0, Rows) or <paramref name="destination"/> is not <see cref="Width"/> long.</exception>
    void DequantizeRow(int row, Span<float> destination);
}
