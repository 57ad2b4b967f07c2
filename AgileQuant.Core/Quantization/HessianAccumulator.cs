using System.Numerics.Tensors;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// Accumulates GPTQ's layer Hessian <c>H = 2 XᵀX / n</c> (cols, cols), in double precision, from calibration
/// inputs of one linear layer: X is (n, cols), one row per token. Batches may be added one at a time; the
/// result equals the reference's running average (IST-DASLab/gptq, gptq.py <c>add_batch</c>). Not thread-safe.
/// </summary>
public sealed class HessianAccumulator
{
    private readonly double[] _sum; // Σ x xᵀ, upper triangle, (cols, cols)
    private readonly double[] _chunkT; // a chunk of input rows, transposed and promoted, (cols, TokenChunk)

    // Tokens folded in per pass over Σ: long enough for vectorized dots, short enough to stay in cache.
    private const int TokenChunk = 64;

    /// <summary>Creates an empty accumulator for a layer with <paramref name="columns"/> input channels.</summary>
    public HessianAccumulator(int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if ((long)columns * columns > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(columns), columns, "Hessian too large for one array");
        Columns = columns;
        _sum = new double[columns * columns];
        _chunkT = new double[columns * TokenChunk];
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
        Span<double> dots = stackalloc double[SharedOperandDot.Width];
        for (int t0 = 0; t0 < n; t0 += TokenChunk)
        {
            int chunk = Math.Min(TokenChunk, n - t0);
            // xT[c, t] = x[t0 + t, c]: each channel's values over the chunk, contiguous
            for (int t = 0; t < chunk; t++)
                for (int c = 0; c < cols; c++)
                    _chunkT[c * TokenChunk + t] = x[(t0 + t) * cols + c];
            // Σ[i, j] += Σ_t xT[i, t] · xT[j, t] for j >= i, four rows i at a time
            for (int i0 = 0; i0 < cols; i0 += SharedOperandDot.Width)
            {
                int tile = Math.Min(SharedOperandDot.Width, cols - i0);
                for (int j = i0; j < cols; j++)
                {
                    var xj = Channel(j, chunk);
                    if (tile == SharedOperandDot.Width)
                        SharedOperandDot.Dot4(xj, Channel(i0, chunk), Channel(i0 + 1, chunk), Channel(i0 + 2, chunk), Channel(i0 + 3, chunk), dots);
                    else
                        for (int m = 0; m < tile; m++) dots[m] = TensorPrimitives.Dot<double>(xj, Channel(i0 + m, chunk));
                    for (int m = 0; m < tile && i0 + m <= j; m++) _sum[(i0 + m) * cols + j] += dots[m];
                }
            }
        }
        SampleCount += n;
    }

    private ReadOnlySpan<double> Channel(int c, int chunk) => _chunkT.AsSpan(c * TokenChunk, chunk);

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
