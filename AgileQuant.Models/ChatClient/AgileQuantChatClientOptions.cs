using AgileQuant.Core.Generation;

namespace AgileQuant.Models.ChatClient;

/// <summary>Settings of an <see cref="AgileQuantChatClient"/> that hold for every call unless a call's <c>ChatOptions</c> overrides them.</summary>
public sealed record AgileQuantChatClientOptions
{
    /// <summary>The chat template; null chooses one from the model (<see cref="ChatTemplate.ForModel"/>).</summary>
    public ChatTemplate? Template { get; init; }

    /// <summary>The model id reported in metadata and responses; null uses the model file's name (or <c>agilequant</c>).</summary>
    public string? ModelId { get; init; }

    /// <summary>Most tokens generated when a call sets no <c>MaxOutputTokens</c>.</summary>
    public int DefaultMaxOutputTokens { get; init; } = 256;

    /// <summary>Sampling when a call sets none of temperature, top-k, top-p or seed (default: greedy).</summary>
    public SamplingOptions DefaultSampling { get; init; } = SamplingOptions.Greedy;
}
