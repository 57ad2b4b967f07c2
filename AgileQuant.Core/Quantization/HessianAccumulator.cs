using System.Numerics.Tensors;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// Accumulates GPTQ's layer Hessian <c>H = 2 XᵀX / n</c> (cols, cols), in double precision, from calibration
/// inputs of one linear layer: X is (n, cols), one row per token. Batches may be added one at a time; the
/// result equals the reference's running average (IST-DASLab/gptq, gptq.py <c>add_batch</c>).
/// </summary>
public sealed class HessianAccumulator
{
    private readonly double[] _sum; // Σ x xᵀ, upper triangle, (cols, cols)
    private readonly double[] _row; // one input row promoted to double, (cols,)

    /// <summary>Creates an empty accumulator for a layer with <paramref name="columns"/> input channels.</summary>
    public HessianAccumulator(int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if ((long)columns * columns > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(columns), columns, "Hessian too large for one array");
        Columns = columns;
        _sum = new double[columns * columns];
        _row = new double[columns];
    }

    /// <summary>Input channels (columns of X, size of H).</summary>
    public int Columns { get; }

    /// <summary>Rows (tokens) accumulated so far: n.</summary>
    public long SampleCount { get; private set; }

    /// <summary>Adds <paramref name="n"/> input rows: <c>Σ += Σ_t x_t x_tᵀ</c>, x is (n, cols) row-major.</summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity.</exception>
    public void Add(ReadOnlySpan<float> x, int n)
    {
        RoundToNearestQuantizer.ValidateShape(x.Length, n, Columns, nameof(x));
        NonFiniteValueException.ThrowIfAny(x, Columns, nameof(x));
        int cols = Columns;
        for (int t = 0; t < n; t++)
        {
            TensorPrimitives.ConvertChecked<float, double>(x.Slice(t * cols, cols), _row);
            for (int i = 0; i < cols; i++)
            {
                double xi = _row[i];
                if (xi == 0) continue;
                // Σ[i, i..] += x_i · x[i..]
                var sumRow = _sum.AsSpan(i * cols + i, cols - i);
                TensorPrimitives.MultiplyAdd(_row.AsSpan(i, cols - i), xi, sumRow, sumRow);
            }
        }
        SampleCount += n;
    }

    /// <summary>The full symmetric Hessian <c>H = 2 Σ x xᵀ / n</c>, (cols, cols), as a new array (zeros if n = 0).</summary>
    public double[] ToMatrix()
    {
        int cols = Columns;
        var h = new double[cols * cols]; // (cols, cols)
        if (SampleCount == 0) return h;
        double factor = 2.0 / SampleCount;
        for (int i = 0; i < cols; i++)
        {
            for (int j = i; j < cols; j++)
            {
                double v = _sum[i * cols + j] * factor;
                h[i * cols + j] = v;
                h[j * cols + i] = v;
            }
        }
        return h;
    }
}
