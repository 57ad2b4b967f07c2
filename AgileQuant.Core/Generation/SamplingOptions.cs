namespace AgileQuant.Core.Generation;

/// <summary>How the next token is chosen from the logits.</summary>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; 0 means greedy (argmax).</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the K most likely tokens before sampling; 0 disables.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of tokens whose probability reaches P (nucleus sampling); 1 disables.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Seed of the random generator; the same seed, model and prompt give the same tokens.</summary>
    public int Seed { get; init; }

    /// <summary>Greedy decoding.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>Checks the ranges; throws <see cref="ArgumentOutOfRangeException"/> on the first bad value.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0f) || float.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number ≥ 0.");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "Top-k must be ≥ 0 (0 disables it).");
        if (!(TopP > 0f && TopP <= 1f)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "Top-p must be in (0, 1].");
    }
}

/// <summary>Why generation stopped.</summary>
public enum FinishReason
{
    /// <summary>The model produced its end-of-sequence token.</summary>
    EndOfSequence,

    /// <summary>The requested number of tokens was generated.</summary>
    MaxTokens,

    /// <summary>The model's context length was reached.</summary>
    ContextFull,

    /// <summary>A stop sequence appeared in the text.</summary>
    StopSequence,
}

/// <summary>Options of one generation call.</summary>
public sealed record GenerationOptions
{
    /// <summary>Sampling settings.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Stop when the model emits its end-of-sequence token (not emitted as text).</summary>
    public bool StopAtEndOfSequence { get; init; } = true;

    /// <summary>Texts that end generation when they appear in the output (the text up to them is emitted).</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];
}

/// <summary>One step of streamed generation.</summary>
/// <param name="Text">New text since the previous update (may be empty while a UTF-8 character is incomplete).</param>
/// <param name="TokenId">The token generated at this step, or −1 on the final update when nothing new was generated.</param>
/// <param name="Finish">Set on the last update: why generation stopped.</param>
public readonly record struct GenerationUpdate(string Text, int TokenId, FinishReason? Finish);
