namespace AgileQuant.Intrinsics.Formats;

/// <summary>A dense FP32 weight matrix W (Rows, Cols), stored row-major.</summary>
public sealed class Fp32Matrix : IWeightMatrix
{
    /// <summary>W (Rows, Cols), row-major: element (r, c) is at <c>r * Cols + c</c>.</summary>
    public float[] Data { get; }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <inheritdoc />
    public long ByteCount => (long)Rows * Cols * sizeof(float);

    /// <summary>Wraps <paramref name="data"/> (not copied) as a (rows, cols) row-major matrix.</summary>
    public Fp32Matrix(float[] data, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (data.LongLength != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} elements for a {rows}x{cols} matrix, found {data.LongLength}.", nameof(data));
        Data = data;
        Rows = rows;
        Cols = cols;
    }

    /// <summary>Row r of W (Cols elements).</summary>
    public ReadOnlySpan<float> Row(int r) => Data.AsSpan(r * Cols, Cols);
}
