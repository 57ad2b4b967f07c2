using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace AgileQuant.Core.Runtime;

/// <summary>The SwiGLU product <c>inner ← silu(gate) · inner</c>, silu(g) = g · σ(g), row ranges on the kernels' threads.</summary>
internal sealed class SwiGlu(RowRanges rowRanges, int width) : IRowRangeStep
{
    private const int Chunk = 1024;

    // the arguments of the call in progress
    private float[] _gate = [];
    private float[] _inner = [];

    /// <summary><paramref name="inner"/> (n, width) ← silu(<paramref name="gate"/>) · inner, gate (n, width).</summary>
    public void Run(float[] gate, float[] inner, int n)
    {
        (_gate, _inner) = (gate, inner);
        rowRanges.Run(this, n, (long)n * width);
        (_gate, _inner) = ([], []);
    }

    void IRowRangeStep.Run(int begin, int end) =>
        Apply(_gate.AsSpan(begin * width, (end - begin) * width), _inner.AsSpan(begin * width, (end - begin) * width));

    /// <summary><c>inner ← g · σ(g) · inner</c> with g = <paramref name="gate"/>, in chunks that stay in L1 between the three passes.</summary>
    private static void Apply(Span<float> gate, Span<float> inner)
    {
        Span<float> sigmoid = stackalloc float[Chunk];
        for (int i = 0; i < gate.Length; i += Chunk)
        {
            int length = Math.Min(Chunk, gate.Length - i);
            Span<float> g = gate.Slice(i, length), s = sigmoid[..length], x = inner.Slice(i, length);
            TensorPrimitives.Sigmoid(g, s);
            MultiplyGated(g, s, x);
        }
    }

    // x[i] ← (g[i] · s[i]) · x[i]: the two products TensorPrimitives.Multiply would round in turn, in one pass
    private static void MultiplyGated(ReadOnlySpan<float> g, ReadOnlySpan<float> s, Span<float> x)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            ReadOnlySpan<Vector<float>> gv = MemoryMarshal.Cast<float, Vector<float>>(g), sv = MemoryMarshal.Cast<float, Vector<float>>(s);
            Span<Vector<float>> xv = MemoryMarshal.Cast<float, Vector<float>>(x);
            for (int v = 0; v < xv.Length; v++) xv[v] = gv[v] * sv[v] * xv[v];
            i = xv.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++) x[i] = g[i] * s[i] * x[i];
    }
}
