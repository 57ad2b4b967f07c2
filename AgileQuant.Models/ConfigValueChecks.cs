using AgileQuant.Core.Runtime;

namespace AgileQuant.Models;

/// <summary>Where the values <see cref="ConfigValueChecks"/> checks were read from, to name them in errors.</summary>
/// <param name="NormEpsilon">The key or field of the norm epsilon.</param>
/// <param name="RotaryBase">The key or field of the RoPE base.</param>
/// <param name="ContextLength">The key or field of the context length.</param>
/// <param name="PositionOffset">The key or field of the learned-position offset.</param>
internal sealed record ConfigKeys(string NormEpsilon, string RotaryBase, string ContextLength, string PositionOffset)
{
    /// <summary>The <see cref="TransformerConfig"/> property names, for configs stored as that record (quantized checkpoints).</summary>
    public static ConfigKeys Properties(string where) => new(
        $"{nameof(TransformerConfig.NormEpsilon)} in {where}", $"{nameof(TransformerConfig.RotaryTheta)} in {where}",
        $"{nameof(TransformerConfig.MaxSequenceLength)} in {where}", $"{nameof(TransformerConfig.LearnedPositionOffset)} in {where}");
}

/// <summary>
/// The value checks every config reader applies to the <see cref="TransformerConfig"/> it built (Hugging Face config.json,
/// GGUF metadata, the llama2.c header, a quantized checkpoint's recorded config), before <see cref="TransformerConfig.Validate"/>
/// (which checks that the sizes agree), so that a value out of range is named by the key it came from: numbers that would turn into NaN or ∞ in the forward pass, positions out of
/// range, and a context length no real model declares. Each problem is a <see cref="ModelFormatException"/> naming the
/// file and the key the value came from.
/// </summary>
internal static class ConfigValueChecks
{
    /// <summary>Longest context accepted (2^24 tokens): above every published model's, far below what int32 positions allow.</summary>
    public const int MaxContextLength = 1 << 24;

    /// <summary>Largest norm epsilon accepted: one that large would dominate any activation's variance.</summary>
    public const float MaxNormEpsilon = 1f;

    /// <summary>Largest RoPE base accepted (published bases go up to about 10^7).</summary>
    public const float MaxRotaryBase = 1e12f;

    /// <summary>Largest learned-position offset accepted (OPT's is 2).</summary>
    public const int MaxLearnedPositionOffset = 1 << 16;

    /// <summary>Throws <see cref="ModelFormatException"/> naming <paramref name="filePath"/> and the key at the first value out of range.</summary>
    public static void Require(string filePath, TransformerConfig config, ConfigKeys keys)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (string.IsNullOrEmpty(config.Family))
            throw new ModelFormatException(filePath, null, $"expected a model family ({nameof(TransformerConfig.Family)}), found {(config.Family is null ? "null" : "an empty name")}");
        if (!(float.IsFinite(config.NormEpsilon) && config.NormEpsilon > 0 && config.NormEpsilon <= MaxNormEpsilon))
            throw Refused(filePath, keys.NormEpsilon, $"a finite norm epsilon in (0, {MaxNormEpsilon}]", config.NormEpsilon);
        if (config.Positions == PositionKind.Rotary && !(float.IsFinite(config.RotaryTheta) && config.RotaryTheta > 0 && config.RotaryTheta <= MaxRotaryBase))
            throw Refused(filePath, keys.RotaryBase, $"a finite RoPE base in (0, {MaxRotaryBase:0e0}]", config.RotaryTheta);
        if (config.MaxSequenceLength > MaxContextLength)
            throw new ModelFormatException(filePath, null, $"{keys.ContextLength}: expected a context length of at most {MaxContextLength} tokens, found {config.MaxSequenceLength}");
        if (config.LearnedPositionOffset is < 0 or > MaxLearnedPositionOffset || config.Positions != PositionKind.Learned && config.LearnedPositionOffset != 0)
            throw new ModelFormatException(filePath, null, config.Positions == PositionKind.Learned
                ? $"{keys.PositionOffset}: expected a learned-position offset in 0..{MaxLearnedPositionOffset}, found {config.LearnedPositionOffset}"
                : $"{keys.PositionOffset}: expected 0 for {config.Positions} positions (the offset indexes a learned table), found {config.LearnedPositionOffset}");
    }

    private static ModelFormatException Refused(string filePath, string key, string expected, float found) =>
        new(filePath, null, $"{key}: expected {expected}, found {found}");
}
