using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// The gated MLP product <c>inner ← act(gate) · inner</c>: SwiGLU's silu(g) = g · σ(g) (LLaMA) or GeGLU's
/// gelu_tanh(g) (Gemma); row ranges on the kernels' threads.
/// </summary>
internal sealed class GatedActivation(RowRanges rowRanges, int width, MlpKind kind) : IRowRangeStep
{
    private const int Chunk = 1024;

    // the arguments of the call in progress
    private float[] _gate = [];
    private float[] _inner = [];

    /// <summary><paramref name="inner"/> (n, width) ← act(<paramref name="gate"/>) · inner, gate (n, width).</summary>
    public void Run(float[] gate, float[] inner, int n)
    {
        (_gate, _inner) = (gate, inner);
        rowRanges.Run(this, n, (long)n * width);
        (_gate, _inner) = ([], []);
    }

    void IRowRangeStep.Run(int begin, int end)
    {
        Span<float> gate = _gate.AsSpan(begin * width, (end - begin) * width), inner = _inner.AsSpan(begin * width, (end - begin) * width);
        if (kind == MlpKind.GeGlu) ApplyGeGlu(gate, inner);
        else ApplySwiGlu(gate, inner);
    }

    /// <summary><c>inner ← g · σ(g) · inner</c> with g = <paramref name="gate"/>, in chunks that stay in L1 between the three passes.</summary>
    private static void ApplySwiGlu(Span<float> gate, Span<float> inner)
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

    /// <summary>
    /// <c>inner ← ½ · g · (1 + tanh(√(2/π) · (g + 0.044715 · g³))) · inner</c> (PyTorch's <c>gelu(approximate="tanh")</c>,
    /// Gemma's <c>gelu_pytorch_tanh</c>), in chunks that stay in L1; g = <paramref name="gate"/>, which is overwritten.
    /// </summary>
    private static void ApplyGeGlu(Span<float> gate, Span<float> inner)
    {
        Span<float> tanh = stackalloc float[Chunk];
        for (int i = 0; i < gate.Length; i += Chunk)
        {
            int length = Math.Min(Chunk, gate.Length - i);
            Span<float> g = gate.Slice(i, length), t = tanh[..length], x = inner.Slice(i, length);
            TensorPrimitives.Multiply(g, g, t);                 // g²
            TensorPrimitives.Multiply(t, 0.044715f, t);
            TensorPrimitives.Add(t, 1f, t);                     // 1 + 0.044715 g²
            TensorPrimitives.Multiply(t, g, t);                 // g + 0.044715 g³
            TensorPrimitives.Multiply(t, 0.7978845608f, t);     // √(2/π) · (…)
            TensorPrimitives.Tanh(t, t);
            TensorPrimitives.Add(t, 1f, t);
            TensorPrimitives.Multiply(g, 0.5f, g);              // ½ g
            MultiplyGated(g, t, x);
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
