namespace AgileQuant.Core.Quantization;

/// <summary>
/// Thrown when a quantizer or calibration accumulator receives NaN or ±Infinity: a quantization scale
/// computed from such a value would silently poison every code of its row or group.
/// </summary>
public sealed class NonFiniteValueException : AgileQuantException
{
    /// <summary>Creates the exception for <paramref name="tensorName"/>[<paramref name="row"/>, <paramref name="column"/>].</summary>
    public NonFiniteValueException(string tensorName, int row, int column, float value)
        : base($"{tensorName}[{row}, {column}] is {Describe(value)}; quantizers accept only finite values")
    {
        TensorName = tensorName;
        Row = row;
        Column = column;
        Value = value;
    }

    /// <summary>Name of the argument or tensor that held the value.</summary>
    public string TensorName { get; }

    /// <summary>Row (token or output channel) of the offending value.</summary>
    public int Row { get; }

    /// <summary>Column (input channel) of the offending value.</summary>
    public int Column { get; }

    /// <summary>The offending value (NaN, +Infinity or -Infinity).</summary>
    public float Value { get; }

    /// <summary>
    /// Throws for the first non-finite entry of <paramref name="values"/>, read as a row-major matrix
    /// with <paramref name="columns"/> columns (use 1 row for a vector).
    /// </summary>
    internal static void ThrowIfAny(ReadOnlySpan<float> values, int columns, string tensorName)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new NonFiniteValueException(tensorName, i / columns, i % columns, values[i]);
        }
    }

    private static string Describe(float value) =>
        float.IsNaN(value) ? "NaN" : value > 0 ? "+Infinity" : "-Infinity";
}
