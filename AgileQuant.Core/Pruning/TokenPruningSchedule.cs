namespace AgileQuant.Core.Pruning;

/// <summary>Which tokens a pruning layer removes, by their score <c>s_i = Σ_h A[h, i, 0]</c> (attention to the start token).</summary>
public enum PruningDirection
{
    /// <summary>Remove the lowest-scoring tokens (the reference code's <c>topk(largest=False)</c>).</summary>
    Lowest,

    /// <summary>Remove the highest-scoring tokens (an ablation).</summary>
    Highest,
}

/// <summary>Which positions the surviving tokens carry into the layers after a pruning layer.</summary>
/// <remarks>
/// Only position encodings applied inside the layers are affected: RoPE (LLaMA) rotates Q/K with these positions
/// and ALiBi (BLOOM) biases scores with the key positions under the same setting. OPT's learned positions are
/// added once at the embedding, before any pruning, so for OPT both settings give the same result.
/// </remarks>
public enum PrunedPositions
{
    /// <summary>
    /// Surviving tokens are renumbered contiguously (0..n'−1 over the tokens a layer holds), as the reference code
    /// does; decode continues each layer from that layer's own count.
    /// </summary>
    Renumbered,

    /// <summary>Every token keeps its original position; decode continues from the original sequence length.</summary>
    Original,
}

/// <summary>
/// Per-layer token-pruning and lower-bit ratios for prefill (docs/method.md §3). In layer l with n tokens, the
/// <c>floor(r_l·n)</c> tokens ranked first by <see cref="Direction"/> are pruned after the attention residual add,
/// and the lowest-scoring remaining tokens are marked lower-bit until <c>floor(b_l·n)</c> of the survivors are
/// (the set is inherited by later layers). Never the start token nor the last token; nothing during decode.
/// </summary>
public sealed class TokenPruningSchedule
{
    private readonly double[] _ratios;
    private readonly double[] _lowBitRatios;

    /// <summary>Creates a schedule from explicit per-layer pruning ratios r_l and optional lower-bit ratios b_l (missing layers: 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A ratio is outside [0, 1) or r_l + b_l ≥ 1.</exception>
    public TokenPruningSchedule(IReadOnlyList<double> ratios, IReadOnlyList<double>? lowBitRatios = null)
    {
        ArgumentNullException.ThrowIfNull(ratios);
        _ratios = ratios.ToArray();
        _lowBitRatios = lowBitRatios?.ToArray() ?? [];
        for (int l = 0; l < Math.Max(_ratios.Length, _lowBitRatios.Length); l++)
        {
            double r = RatioAt(l), b = LowBitRatioAt(l);
            if (!(r >= 0 && r < 1)) throw new ArgumentOutOfRangeException(nameof(ratios), r, $"Layer {l}: the pruning ratio must be in [0, 1).");
            if (!(b >= 0 && b < 1)) throw new ArgumentOutOfRangeException(nameof(lowBitRatios), b, $"Layer {l}: the lower-bit ratio must be in [0, 1).");
            if (r + b >= 1) throw new ArgumentOutOfRangeException(nameof(lowBitRatios), b, $"Layer {l}: pruning ratio {r} plus lower-bit ratio {b} must be below 1.");
        }
    }

    /// <summary>
    /// The progressive schedule of the reference code: layers <paramref name="startLayer"/>..<paramref name="numLayers"/>−1
    /// (m of them) each prune <c>γ = 1 − (1−β)^(1/m)</c>, so about <c>1−β</c> of the tokens survive all of them;
    /// every layer uses lower-bit ratio <paramref name="lowBitRatio"/>.
    /// </summary>
    public static TokenPruningSchedule Progressive(int numLayers, int startLayer, double beta, double lowBitRatio = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numLayers, 1);
        if (startLayer < 0 || startLayer >= numLayers)
            throw new ArgumentOutOfRangeException(nameof(startLayer), startLayer, $"The start layer must be in [0, {numLayers}).");
        if (!(beta >= 0 && beta < 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "The pruned fraction β must be in [0, 1).");
        double gamma = ProgressiveLayerRatio(beta, numLayers - startLayer);
        var ratios = new double[numLayers];
        for (int l = startLayer; l < numLayers; l++) ratios[l] = gamma;
        var lowBit = Enumerable.Repeat(lowBitRatio, numLayers).ToArray();
        return new TokenPruningSchedule(ratios, lowBit);
    }

    /// <summary>Per-layer ratio <c>γ = 1 − (1−β)^(1/m)</c> that keeps <c>1−β</c> of the tokens after <paramref name="prunedLayers"/> (m) layers.</summary>
    public static double ProgressiveLayerRatio(double beta, int prunedLayers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(prunedLayers, 1);
        if (!(beta >= 0 && beta < 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "The pruned fraction β must be in [0, 1).");
        return 1 - Math.Pow(1 - beta, 1.0 / prunedLayers);
    }

    /// <summary>Which tokens are pruned (default: the lowest-scoring).</summary>
    public PruningDirection Direction { get; init; } = PruningDirection.Lowest;

    /// <summary>Positions of the survivors in later layers (default: renumbered, like the reference code).</summary>
    public PrunedPositions Positions { get; init; } = PrunedPositions.Renumbered;

    /// <summary>The explicit per-layer pruning ratios (layers beyond the list: 0).</summary>
    public IReadOnlyList<double> Ratios => _ratios;

    /// <summary>The explicit per-layer lower-bit ratios (layers beyond the list: 0).</summary>
    public IReadOnlyList<double> LowBitRatios => _lowBitRatios;

    /// <summary>Pruning ratio r_l of <paramref name="layer"/> (0 beyond the list).</summary>
    public double RatioAt(int layer) => layer >= 0 && layer < _ratios.Length ? _ratios[layer] : 0;

    /// <summary>Lower-bit ratio b_l of <paramref name="layer"/> (0 beyond the list).</summary>
    public double LowBitRatioAt(int layer) => layer >= 0 && layer < _lowBitRatios.Length ? _lowBitRatios[layer] : 0;

    /// <summary>True when no layer prunes and no layer marks lower-bit tokens.</summary>
    public bool IsEmpty => _ratios.All(r => r == 0) && _lowBitRatios.All(b => b == 0);
}
