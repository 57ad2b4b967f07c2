using AgileQuant.Core.Generation;

namespace AgileQuant.Models.ChatClient;

/// <summary>Settings of an <see cref="AgileQuantChatClient"/> that hold for every call unless a call's <c>ChatOptions</c> overrides them.</summary>
public sealed record AgileQuantChatClientOptions
{
    /// <summary>
    /// The chat template, e.g. a named format (<see cref="ChatTemplate.FromName"/>: <c>chatml</c>, <c>llama3</c>, …); null: the
    /// format recognised in the model's own template (<c>LoadedModel.ChatTemplateText</c>, through <c>AsChatClient</c>), else
    /// <see cref="ChatTemplate.ForModel"/>'s.
    /// </summary>
    public ChatTemplate? Template { get; init; }

    /// <summary>The model id reported in metadata and responses; null uses the model file's name (or <c>agilequant</c>).</summary>
    public string? ModelId { get; init; }

    /// <summary>Most tokens generated when a call sets no <c>MaxOutputTokens</c>.</summary>
    public int DefaultMaxOutputTokens { get; init; } = 256;

    /// <summary>Sampling for whatever a call's <c>ChatOptions</c> leaves unset (temperature, top-k, top-p, min-p, penalties, seed; default: greedy).</summary>
    public SamplingOptions DefaultSampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>
    /// The tokens that end a reply besides the template's stop texts; null: the model's EOS. <c>LoadedModel.AsChatClient</c>
    /// fills in the model's declared end tokens (<see cref="LoadedModel.EndTokenIds"/>).
    /// </summary>
    public IReadOnlyList<int>? EndTokenIds { get; init; }
}
