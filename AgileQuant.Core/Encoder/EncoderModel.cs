using AgileQuant.Core.Pruning;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;

namespace AgileQuant.Core.Encoder;

/// <summary>How an encoder scores tokens for pruning.</summary>
public enum TokenScoring
{
    /// <summary><c>s_i = Σ_h A[h, i, 0]</c>: attention from token i to the first token ([CLS]), as the decoder runtime ranks.</summary>
    StartTokenAttention,

    /// <summary>Seeded random scores: a control that prunes the same number of tokens without looking at them.</summary>
    Random,
}

/// <summary>
/// A loaded BERT-family encoder: immutable weights, the kernel for its linears and the runtime options it shares
/// with the decoder runtime (4-bit-activation kernel, Q/K/V and K/V rounding, a <see cref="TokenPruningSchedule"/>).
/// Thread-safe; create one <see cref="EncoderContext"/> per thread.
/// </summary>
public sealed class EncoderModel
{
    /// <summary>Wraps validated weights; throws <see cref="AgileQuantException"/> when no kernel runs a layer at its activation width.</summary>
    /// <param name="weights">The weights.</param>
    /// <param name="kernel">Kernel for FP32 and 8-bit-activation linears.</param>
    /// <param name="options">Runtime options; the mixed scheme's lower-bit tokens are not supported by the encoder.</param>
    /// <param name="scoring">How pruning ranks tokens.</param>
    /// <param name="scoringSeed">Seed of <see cref="TokenScoring.Random"/>.</param>
    public EncoderModel(EncoderWeights weights, IMatMulKernel kernel, RuntimeOptions? options = null,
        TokenScoring scoring = TokenScoring.StartTokenAttention, int scoringSeed = 0)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(kernel);
        options ??= RuntimeOptions.Default;
        options.Attention.Validate();
        if (options.LowBitTokenRatio > 0 || options.Pruning is { LowBitRatios: var lowBit } && lowBit.Any(b => b > 0))
            throw new ArgumentException("The encoder does not support lower-bit (mixed-precision) tokens.", nameof(options));
        if (!Enum.IsDefined(scoring)) throw new ArgumentOutOfRangeException(nameof(scoring), scoring, "Unknown token scoring.");
        weights.Validate();
        Weights = weights;
        Kernel = kernel;
        Options = options;
        Scoring = scoring;
        ScoringSeed = scoringSeed;
        for (int l = 0; l < weights.Layers.Count; l++)
            foreach ((_, LinearLayer linear) in weights.Layers[l].Linears)
            {
                IMatMulKernel? k = KernelForBits(linear.ActivationBits);
                if (k is null || !k.Supports(linear.Weight))
                    throw new AgileQuantException($"Layer {l}: no kernel multiplies a {linear.Weight.GetType().Name} with {linear.ActivationBits}-bit activations (kernel '{(k ?? kernel).Name}').");
                k.Prepare(linear.Weight); // repacked into the kernel's layout now, not on the first token
            }
    }

    /// <summary>The weights (shared, read-only).</summary>
    public EncoderWeights Weights { get; }

    /// <summary>The sizes.</summary>
    public EncoderConfig Config => Weights.Config;

    /// <summary>The kernel for FP32 and 8-bit-activation linears.</summary>
    public IMatMulKernel Kernel { get; }

    /// <summary>Runtime options (4-bit kernel, attention rounding, pruning schedule).</summary>
    public RuntimeOptions Options { get; }

    /// <summary>How pruning ranks tokens.</summary>
    public TokenScoring Scoring { get; }

    /// <summary>Seed of <see cref="TokenScoring.Random"/>.</summary>
    public int ScoringSeed { get; }

    /// <summary>A model with the same weights and kernels but other runtime options or scoring (e.g. another pruning schedule).</summary>
    public EncoderModel With(RuntimeOptions options, TokenScoring scoring = TokenScoring.StartTokenAttention, int scoringSeed = 0) =>
        new(Weights, Kernel, options, scoring, scoringSeed);

    /// <summary>Creates a context (scratch buffers) for one thread.</summary>
    public EncoderContext CreateContext() => new(this);

    internal IMatMulKernel? KernelForBits(int bits) => bits == 4 ? Options.FourBitActivationKernel : Kernel;
}
