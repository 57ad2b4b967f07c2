namespace AgileQuant.Core.Generation;

/// <summary>
/// How the next token is chosen from the logits. Applied in this order (Hugging Face <c>generate</c>'s order, with
/// llama.cpp's penalties first): repetition, frequency and presence penalties over the last
/// <see cref="PenaltyWindow"/> tokens, temperature, top-k, top-p, min-p, then a seeded draw.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; 0 means greedy (argmax of the penalized logits).</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the K most likely tokens before sampling; 0 disables.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of tokens whose probability reaches P (nucleus sampling); 1 disables.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Drop tokens whose probability is below MinP times the most likely token's; 0 disables.</summary>
    public float MinP { get; init; }

    /// <summary>
    /// llama.cpp's repetition penalty: a token seen in the window has its logit divided by it when positive and
    /// multiplied by it when not (CTRL, Keskar et al. 2019); 1 disables.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Subtracted from a token's logit once per occurrence in the window (OpenAI's <c>frequency_penalty</c>); 0 disables.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>Subtracted once from the logit of every token that occurs in the window (OpenAI's <c>presence_penalty</c>); 0 disables.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>How many of the latest tokens (prompt included, as llama.cpp counts them) the penalties look at; 0 disables them.</summary>
    public int PenaltyWindow { get; init; } = 64;

    /// <summary>Seed of the random generator; the same seed, model and prompt give the same tokens.</summary>
    public int Seed { get; init; }

    /// <summary>Greedy decoding.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>llama.cpp's default sampling: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties.</summary>
    public static SamplingOptions LlamaCppDefaults { get; } = new() { Temperature = 0.8f, TopK = 40, TopP = 0.95f, MinP = 0.05f };

    /// <summary>True when any penalty changes the logits.</summary>
    public bool HasPenalties => PenaltyWindow > 0 && (RepetitionPenalty != 1f || FrequencyPenalty != 0f || PresencePenalty != 0f);

    /// <summary>Checks the ranges; throws <see cref="ArgumentOutOfRangeException"/> on the first bad value, its message naming the setting, the range and the value found.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0f) || float.IsInfinity(Temperature)) throw OutOfRange(nameof(Temperature), Temperature, $"Temperature must be a finite number ≥ 0, found {Temperature}.");
        if (TopK < 0) throw OutOfRange(nameof(TopK), TopK, $"Top-k must be ≥ 0 (0 disables it), found {TopK}.");
        if (!(TopP > 0f && TopP <= 1f)) throw OutOfRange(nameof(TopP), TopP, $"Top-p must be in (0, 1], found {TopP}.");
        if (!(MinP >= 0f && MinP <= 1f)) throw OutOfRange(nameof(MinP), MinP, $"Min-p must be in [0, 1], found {MinP}.");
        if (!(RepetitionPenalty > 0f) || float.IsInfinity(RepetitionPenalty)) throw OutOfRange(nameof(RepetitionPenalty), RepetitionPenalty, $"The repetition penalty must be a finite number > 0 (1 disables it), found {RepetitionPenalty}.");
        if (!(FrequencyPenalty >= -2f && FrequencyPenalty <= 2f)) throw OutOfRange(nameof(FrequencyPenalty), FrequencyPenalty, $"The frequency penalty must be in [-2, 2], found {FrequencyPenalty}.");
        if (!(PresencePenalty >= -2f && PresencePenalty <= 2f)) throw OutOfRange(nameof(PresencePenalty), PresencePenalty, $"The presence penalty must be in [-2, 2], found {PresencePenalty}.");
        if (PenaltyWindow < 0) throw OutOfRange(nameof(PenaltyWindow), PenaltyWindow, $"The penalty window must be ≥ 0 tokens (0 disables the penalties), found {PenaltyWindow}.");
    }

    /// <summary>A 64-bit seed (as APIs such as OpenAI's take it) as the sampler's 32-bit one: values in range pass unchanged, others are folded (<c>low ^ high</c>).</summary>
    public static int FoldSeed(long seed) => seed is >= int.MinValue and <= int.MaxValue ? (int)seed : unchecked((int)seed ^ (int)(seed >> 32));

    private static ArgumentOutOfRangeException OutOfRange(string name, object value, string message) => new(name, value, message);
}

/// <summary>Why generation stopped.</summary>
public enum FinishReason
{
    /// <summary>The model produced one of its end tokens (<see cref="GenerationOptions.EndTokenIds"/>).</summary>
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

    /// <summary>Stop when the model emits an end token (not emitted as text).</summary>
    public bool StopAtEndOfSequence { get; init; } = true;

    /// <summary>
    /// The tokens that end generation; null: the model's <c>EosTokenId</c>. A loaded model declares its own
    /// (e.g. llama2.c models also end a story with BOS, as llama2.c's <c>run.c</c> stops at it).
    /// </summary>
    public IReadOnlyList<int>? EndTokenIds { get; init; }

    /// <summary>Texts that end generation when they appear in the output (the text up to them is emitted).</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];
}

/// <summary>One step of streamed generation.</summary>
/// <param name="Text">New text since the previous update (may be empty while a UTF-8 character is incomplete).</param>
/// <param name="TokenId">The token generated at this step, or −1 on the final update when nothing new was generated.</param>
/// <param name="Finish">Set on the last update: why generation stopped.</param>
public readonly record struct GenerationUpdate(string Text, int TokenId, FinishReason? Finish);
