using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// A GGUF token-embedding table kept as the file's blocks (a copy of the tensor's bytes, Rows × RowBytes) and dequantized
/// row by row on lookup by the type's reference dequantizer (<see cref="GgmlTypeTraits.DequantizeRow"/>), the same call
/// that dequantized the whole table at load before: a row looked up here is bit for bit the row that table held.
/// </summary>
internal sealed class GgmlEmbeddingRows : IEmbeddingRows
{
    private readonly GgmlTypeTraits _traits;
    private readonly byte[] _blocks; // (Rows, _rowBytes): the tensor's bytes as stored
    private readonly int _rowBytes;

    /// <summary>Wraps <paramref name="blocks"/> (taken, not copied): <paramref name="rows"/> rows of <paramref name="width"/> elements of <paramref name="traits"/>' type.</summary>
    public GgmlEmbeddingRows(GgmlTypeTraits traits, byte[] blocks, int rows, int width)
    {
        _traits = traits;
        _rowBytes = (int)traits.RowBytes(width);
        if (blocks.LongLength != (long)rows * _rowBytes)
            throw new ArgumentException($"Expected {(long)rows * _rowBytes} bytes of {traits.Type} blocks ({rows} rows x {_rowBytes}), found {blocks.LongLength}.", nameof(blocks));
        _blocks = blocks;
        Rows = rows;
        Width = width;
    }

    /// <summary>The ggml type of the blocks.</summary>
    public GgmlType Type => _traits.Type;

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Width { get; }

    /// <inheritdoc />
    public long ByteCount => _blocks.LongLength;

    /// <inheritdoc />
    public void DequantizeRow(int row, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Rows, nameof(row));
        if (destination.Length != Width)
            throw new ArgumentOutOfRangeException(nameof(destination), $"Expected a destination of {Width} elements, found {destination.Length}.");
        _traits.DequantizeRow(_blocks.AsSpan((int)((long)row * _rowBytes), _rowBytes), destination);
    }
}
