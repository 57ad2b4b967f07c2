using AgileQuant.Intrinsics;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// A loaded decoder model: immutable weights, the kernel that multiplies by them, and precomputed
/// position tables. Thread-safe; create one <see cref="InferenceContext"/> per conversation.
/// </summary>
public sealed class TransformerModel
{
    /// <summary>The weights (shared, read-only).</summary>
    public TransformerWeights Weights { get; }

    /// <summary>The architecture.</summary>
    public TransformerConfig Config => Weights.Config;

    /// <summary>The matrix kernel every linear layer runs through.</summary>
    public IMatMulKernel Kernel { get; }

    /// <summary>Rotary embedding, for <see cref="PositionKind.Rotary"/> models.</summary>
    internal RotaryEmbedding? Rotary { get; }

    /// <summary>Per-head ALiBi slopes, for <see cref="PositionKind.Alibi"/> models.</summary>
    internal float[]? AlibiSlopes { get; }

    /// <summary>Wraps validated weights with a kernel; throws <see cref="AgileQuantException"/> if the weights do not fit their config or the kernel cannot run them.</summary>
    public TransformerModel(TransformerWeights weights, IMatMulKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(kernel);
        weights.Validate();
        Weights = weights;
        Kernel = kernel;
        foreach (LayerWeights l in weights.Layers)
            foreach (LinearLayer? linear in new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down })
                if (linear is not null && !kernel.Supports(linear.Weight))
                    throw new AgileQuantException($"Kernel '{kernel.Name}' cannot multiply by a {linear.Weight.GetType().Name}.");
        TransformerConfig c = weights.Config;
        if (c.Positions == PositionKind.Rotary) Rotary = new RotaryEmbedding(c.HeadDim, c.RotaryTheta, c.RotaryPairing);
        if (c.Positions == PositionKind.Alibi) AlibiSlopes = Runtime.AlibiSlopes.Compute(c.NumHeads);
    }

    /// <summary>Creates a fresh inference context (empty KV cache) for one conversation.</summary>
    public InferenceContext CreateContext() => new(this);
}
