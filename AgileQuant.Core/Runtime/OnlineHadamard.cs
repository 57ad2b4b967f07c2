using AgileQuant.Intrinsics.Rotation;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// QuaRot's online rotation of a linear's input (<see cref="LinearLayer.HadamardInput"/>): each row of x (n, width) ←
/// H_width·row / √width, row ranges on the kernels' threads. One per inference context.
/// </summary>
internal sealed class OnlineHadamard(RowRanges rowRanges) : IRowRangeStep
{
    // the arguments of the call in progress
    private float[] _rows = [];
    private int _width;

    /// <summary>Rotates the first <paramref name="n"/> rows of <paramref name="rows"/> (n, <paramref name="width"/>) in place.</summary>
    public void Run(float[] rows, int n, int width)
    {
        (_rows, _width) = (rows, width);
        rowRanges.Run(this, n, (long)n * width);
        _rows = [];
    }

    void IRowRangeStep.Run(int begin, int end) => HadamardTransform.TransformRows(_rows.AsSpan(begin * _width, (end - begin) * _width), _width);
}
