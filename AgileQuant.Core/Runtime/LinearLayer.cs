using AgileQuant.Intrinsics;

namespace AgileQuant.Core.Runtime;

/// <summary>A linear layer <c>y = x · Wᵀ + b</c>: weight W (out, in) in any kernel format, optional bias b (out).</summary>
public sealed class LinearLayer
{
    /// <summary>W (OutFeatures, InFeatures).</summary>
    public IWeightMatrix Weight { get; }

    /// <summary>b (OutFeatures), or null when the layer has no bias.</summary>
    public float[]? Bias { get; }

    /// <summary>
    /// Bits of the per-token activation codes an integer kernel quantizes this layer's input to (8 or 4);
    /// ignored for FP32 weights, whose inputs stay in floating point.
    /// </summary>
    public int ActivationBits { get; init; } = 8;

    /// <summary>
    /// Activation bits for the "lower-bit" tokens of the mixed scheme (docs/method.md §2–3: the lowest-ranked tokens
    /// get 4-bit activations at o_proj, the MLP input and down_proj); 0 when every token uses <see cref="ActivationBits"/>.
    /// </summary>
    public int LowBitActivationBits { get; init; }

    /// <summary>
    /// TRIP (docs/method.md §4): static per-tensor scales from calibration for this layer's input, used instead of
    /// per-token scales by the fused gather → quantize → integer matmul → dequantize pass
    /// (<see cref="AgileQuant.Intrinsics.Trip.TripMatMul"/>); null = dynamic per-token scales.
    /// </summary>
    public AgileQuant.Intrinsics.Trip.StaticActivationScales? StaticScales { get; init; }

    /// <summary>
    /// QuaRot's online rotation (arXiv 2404.00456, §3; docs/accuracy.md, "Rotation"): the decoder multiplies this layer's
    /// input by the normalized Hadamard matrix of its width (<see cref="AgileQuant.Intrinsics.Rotation.HadamardTransform"/>)
    /// before it is quantized, and <see cref="Weight"/> holds W·Hᵀ, so <c>(W·Hᵀ)·(H·x) = W·x</c>. Set by
    /// <see cref="Quantization.ModelRotation"/> on o_proj and down_proj.
    /// </summary>
    public bool HadamardInput { get; init; }

    /// <summary>Output width.</summary>
    public int OutFeatures => Weight.Rows;

    /// <summary>Input width.</summary>
    public int InFeatures => Weight.Cols;

    /// <summary>Creates the layer; the bias length must equal the weight's row count.</summary>
    public LinearLayer(IWeightMatrix weight, float[]? bias = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (bias is not null && bias.Length != weight.Rows)
            throw new ArgumentException($"Bias has {bias.Length} elements, expected {weight.Rows}.", nameof(bias));
        Weight = weight;
        Bias = bias;
    }

    /// <summary>y (tokens, out) = x (tokens, in) · Wᵀ + b, through <paramref name="kernel"/>.</summary>
    public void Forward(IMatMulKernel kernel, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        kernel.MatMul(Weight, x.Slice(0, tokens * InFeatures), y.Slice(0, tokens * OutFeatures), tokens);
        if (Bias is null) return;
        for (int t = 0; t < tokens; t++)
            System.Numerics.Tensors.TensorPrimitives.Add(y.Slice(t * OutFeatures, OutFeatures), Bias, y.Slice(t * OutFeatures, OutFeatures));
    }
}

/// <summary>Weights of one normalisation: scale w (dim) and, for LayerNorm, bias b (dim).</summary>
public sealed class NormLayer
{
    /// <summary>Scale w (dim).</summary>
    public float[] Weight { get; }

    /// <summary>Bias b (dim), or null (RMSNorm).</summary>
    public float[]? Bias { get; }

    /// <summary>Normalisation kind.</summary>
    public NormKind Kind { get; }

    /// <summary>Epsilon inside the square root.</summary>
    public float Epsilon { get; }

    /// <summary>Creates the layer.</summary>
    public NormLayer(NormKind kind, float[] weight, float[]? bias, float epsilon)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (bias is not null && bias.Length != weight.Length)
            throw new ArgumentException($"Norm bias has {bias.Length} elements, expected {weight.Length}.", nameof(bias));
        Kind = kind;
        Weight = weight;
        Bias = bias;
        Epsilon = epsilon;
    }

    /// <summary>Normalises each of <paramref name="tokens"/> rows of x (tokens, dim) into y (may alias x).</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        int dim = Weight.Length;
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<float> xr = x.Slice(t * dim, dim);
            Span<float> yr = y.Slice(t * dim, dim);
            if (Kind == NormKind.RmsNorm)
            {
                // y = w · x / sqrt(mean(x²) + eps)
                float meanSquare = System.Numerics.Tensors.TensorPrimitives.SumOfSquares(xr) / dim;
                float inv = 1f / MathF.Sqrt(meanSquare + Epsilon);
                System.Numerics.Tensors.TensorPrimitives.Multiply(xr, inv, yr);
                System.Numerics.Tensors.TensorPrimitives.Multiply(yr, Weight, yr);
            }
            else
            {
                // y = w · (x − μ) / sqrt(σ² + eps) + b
                float mean = System.Numerics.Tensors.TensorPrimitives.Sum(xr) / dim;
                System.Numerics.Tensors.TensorPrimitives.Subtract(xr, mean, yr);
                float variance = System.Numerics.Tensors.TensorPrimitives.SumOfSquares(yr) / dim;
                float inv = 1f / MathF.Sqrt(variance + Epsilon);
                System.Numerics.Tensors.TensorPrimitives.Multiply(yr, inv, yr);
                System.Numerics.Tensors.TensorPrimitives.Multiply(yr, Weight, yr);
                if (Bias is not null) System.Numerics.Tensors.TensorPrimitives.Add(yr, Bias, yr);
            }
        }
    }
}
