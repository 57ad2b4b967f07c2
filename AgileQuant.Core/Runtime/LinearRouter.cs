using System.Numerics.Tensors;
using AgileQuant.Core.Pruning;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Runs a decoder layer's linears, <c>y = x · Wᵀ + b</c>, each row through the kernel for its activation width: at the
/// linears of the mixed scheme, the rows the pruner marks lower-bit go through the 4-bit-activation kernel and the rest
/// through the linear's own (Agile-Quant, arXiv 2312.05693: activation-aware token pruning and lower-bit tokens); a
/// linear with static activation scales runs TRIP's fused gather → quantize → integer matmul → dequantize pass instead.
/// One per inference context.
/// </summary>
internal sealed class LinearRouter
{
    private readonly TransformerModel _model;
    private readonly TokenPruner _pruner; // lower-bit flags of the chunk's current rows
    private readonly int _threads;        // threads of the model's kernel, for TRIP passes
    private readonly int _widest;         // the widest linear input or output of a layer
    private float[] _gatherIn = [];       // (n, _widest): rows routed to one activation width
    private float[] _gatherOut = [];      // (n, _widest)
    private int[] _tripRows = [];         // (n): 0..n-1, the rows a TRIP pass gathers

    public LinearRouter(TransformerModel model, TokenPruner pruner, int threads)
    {
        _model = model;
        _pruner = pruner;
        _threads = threads;
        TransformerConfig c = model.Config;
        _widest = Math.Max(Math.Max(c.HiddenSize, c.NumHeads * c.HeadDim), c.IntermediateSize);
    }

    /// <summary>
    /// y (n, OutFeatures) = x (n, InFeatures) · Wᵀ + b. With <paramref name="mixed"/>, rows the pruner marks lower-bit use
    /// the linear's <see cref="LinearLayer.LowBitActivationBits"/> (when it has them); otherwise every row uses
    /// <see cref="LinearLayer.ActivationBits"/>.
    /// </summary>
    public void Linear(LinearLayer linear, ReadOnlySpan<float> x, Span<float> y, int n, bool mixed)
    {
        if (linear.StaticScales is StaticActivationScales scales && TripMatMul.Supports(linear.Weight))
        {
            Trip(linear, scales, x, y, n, mixed);
            return;
        }
        if (!mixed || linear.LowBitActivationBits == 0 || _pruner.LowBitCount == 0)
        {
            linear.Forward(_model.KernelForBits(linear.ActivationBits)!, x, y, n);
            return;
        }
        int inF = linear.InFeatures, outF = linear.OutFeatures;
        if (_gatherIn.Length < n * _widest)
        {
            _gatherIn = new float[n * _widest];
            _gatherOut = new float[n * _widest];
        }
        for (int pass = 0; pass < 2; pass++) // lower-bit rows first, then the rest
        {
            bool lowBit = pass == 0;
            int rows = 0;
            for (int i = 0; i < n; i++)
                if (_pruner.LowBit[i] == lowBit) x.Slice(i * inF, inF).CopyTo(_gatherIn.AsSpan(rows++ * inF, inF));
            if (rows == 0) continue;
            int bits = lowBit ? linear.LowBitActivationBits : linear.ActivationBits;
            linear.Forward(_model.KernelForBits(bits)!, _gatherIn, _gatherOut, rows);
            rows = 0;
            for (int i = 0; i < n; i++)
                if (_pruner.LowBit[i] == lowBit) _gatherOut.AsSpan(rows++ * outF, outF).CopyTo(y.Slice(i * outF, outF));
        }
    }

    /// <summary>
    /// TRIP: one fused pass over the <paramref name="n"/> rows, each quantized with the linear's static scale at its own
    /// bit width (lower-bit rows 4-bit when <paramref name="mixed"/>).
    /// </summary>
    private void Trip(LinearLayer linear, StaticActivationScales scales, ReadOnlySpan<float> x, Span<float> y, int n, bool mixed)
    {
        int outF = linear.OutFeatures;
        if (_tripRows.Length < n) _tripRows = new int[n];
        for (int i = 0; i < n; i++) _tripRows[i] = i;
        ReadOnlySpan<bool> lowBit = mixed && linear.LowBitActivationBits == 4 && _pruner.LowBitCount > 0 ? _pruner.LowBit : default;
        IMatMulKernel kernel = _model.Kernel;
        TripMatMul.Multiply(kernel, linear.Weight, x.Slice(0, n * linear.InFeatures), _tripRows.AsSpan(0, n), lowBit, scales, y, _threads);
        if (linear.Bias is null) return;
        for (int i = 0; i < n; i++)
            TensorPrimitives.Add(y.Slice(i * outF, outF), linear.Bias, y.Slice(i * outF, outF));
    }
}
