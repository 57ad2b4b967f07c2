using System.Numerics.Tensors;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// The residual add and the norm after it, row by row: x ← x + deltaNorm(delta) (when given; Gemma's post-norms normalise
/// the block's output first, in place), then target ← norm(x) (when given; the target may be x itself). A few rows at a
/// time, so each row is still in L1 for its norm; row ranges on the kernels' threads.
/// </summary>
internal sealed class ResidualAndNorm(RowRanges rowRanges, int width) : IRowRangeStep
{
    private const int RowBlock = 8;

    // the arguments of the call in progress
    private float[] _residual = [];
    private float[]? _delta;
    private NormLayer? _deltaNorm;
    private NormLayer? _norm;
    private float[] _target = [];

    /// <summary>
    /// For each of the <paramref name="n"/> rows of <paramref name="residual"/> (n, width): x ← x + <paramref name="delta"/>
    /// (n, width) when given, then <paramref name="target"/> (n, width) ← norm(x) when <paramref name="norm"/> is given.
    /// </summary>
    public void Run(float[] residual, float[]? delta, NormLayer? norm, float[] target, int n) => Run(residual, delta, null, norm, target, n);

    /// <summary>
    /// As <see cref="Run(float[], float[], NormLayer, float[], int)"/>, with <paramref name="delta"/> first normalised in place by
    /// <paramref name="deltaNorm"/> when given: x ← x + deltaNorm(delta).
    /// </summary>
    public void Run(float[] residual, float[]? delta, NormLayer? deltaNorm, NormLayer? norm, float[] target, int n)
    {
        (_residual, _delta, _deltaNorm, _norm, _target) = (residual, delta, deltaNorm, norm, target);
        rowRanges.Run(this, n, (long)n * width);
        (_residual, _delta, _deltaNorm, _norm, _target) = ([], null, null, null, []);
    }

    void IRowRangeStep.Run(int begin, int end)
    {
        int d = width;
        for (int r = begin; r < end; r += RowBlock)
        {
            int rows = Math.Min(RowBlock, end - r);
            Span<float> x = _residual.AsSpan(r * d, rows * d);
            if (_delta is not null)
            {
                Span<float> delta = _delta.AsSpan(r * d, rows * d);
                _deltaNorm?.Forward(delta, delta, rows);
                TensorPrimitives.Add(x, delta, x);
            }
            _norm?.Forward(x, _target.AsSpan(r * d, rows * d), rows);
        }
    }
}
