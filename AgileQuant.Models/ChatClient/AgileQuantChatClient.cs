using System.Runtime.CompilerServices;
using AgileQuant.Core;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using CoreFinishReason = AgileQuant.Core.Generation.FinishReason;

namespace AgileQuant.Models.ChatClient;

/// <summary>
/// An <see cref="IChatClient"/> over a local <see cref="TransformerModel"/>: formats the conversation with a
/// <see cref="ChatTemplate"/>, generates the reply token by token and streams it. Safe for concurrent use:
/// the weights are shared read-only and every call runs in its own <see cref="InferenceContext"/> (KV cache).
/// Tools and response formats in <see cref="ChatOptions"/> are ignored.
/// </summary>
public sealed class AgileQuantChatClient : IChatClient
{
    /// <summary>Provider name reported in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "agilequant";

    private readonly TextGenerator _generator;
    private readonly AgileQuantChatClientOptions _options;
    private readonly LoadedModel? _owner;

    /// <summary>
    /// Creates a client; <paramref name="tokenizer"/> must produce ids inside the model's vocabulary. The template is
    /// <see cref="AgileQuantChatClientOptions.Template"/>, else <see cref="ChatTemplate.ForModel"/>'s. Templates that spell
    /// special tokens (<see cref="ChatTemplate.FromName"/>: <c>chatml</c>, <c>llama3</c>, …) need a tokenizer that parses
    /// them (<c>TokenizerFile.Load(path, parseSpecialTokens: true)</c>); <c>LoadedModel.AsChatClient</c> arranges that itself.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="AgileQuantChatClientOptions.DefaultMaxOutputTokens"/> is negative or the default sampling is out of range.</exception>
    public AgileQuantChatClient(TransformerModel model, Tokenizer tokenizer, AgileQuantChatClientOptions? options = null)
        : this(model, tokenizer, modelTemplate: null, options)
    {
    }

    /// <summary>
    /// A client over <paramref name="owner"/>'s model: every call fails with <see cref="ObjectDisposedException"/> once it is
    /// disposed. Without <see cref="AgileQuantChatClientOptions.Template"/>, the format of the model's own template
    /// (<see cref="LoadedModel.ChatTemplateText"/>) when it carries one.
    /// </summary>
    /// <exception cref="AgileQuantException">The model's template is in no format AgileQuant writes (the message names it and where it was read).</exception>
    internal AgileQuantChatClient(LoadedModel owner, Tokenizer tokenizer, AgileQuantChatClientOptions? options)
        : this(owner.Model, tokenizer, options?.Template is null && owner.ChatTemplateText is string text
            ? ModelChatTemplate.Recognise(text, owner.ChatTemplateOrigin ?? owner.SourcePath) : null, options) => _owner = owner;

    private AgileQuantChatClient(TransformerModel model, Tokenizer tokenizer, ChatTemplate? modelTemplate, AgileQuantChatClientOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new AgileQuantChatClientOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.DefaultMaxOutputTokens, nameof(options));
        ArgumentNullException.ThrowIfNull(options.DefaultSampling, nameof(options));
        options.DefaultSampling.Validate();
        Model = model;
        Tokenizer = tokenizer;
        _options = options;
        _generator = new TextGenerator(model, tokenizer);
        Template = options.Template ?? modelTemplate ?? ChatTemplate.ForModel(model.Config, tokenizer);
        Metadata = new ChatClientMetadata(ProviderName, null, options.ModelId ?? ProviderName);
    }

    /// <summary>The model every call runs (shared, never modified).</summary>
    public TransformerModel Model { get; }

    /// <summary>The tokenizer of <see cref="Model"/>.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The template that formats conversations into prompts.</summary>
    public ChatTemplate Template { get; }

    /// <summary>Provider <c>agilequant</c> and the model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>
    /// Encodes a conversation as the model sees it. A template that spells special tokens (<c>chatml</c>, <c>llama3</c>, …)
    /// gives one text, encoded with those tokens parsed, as llama.cpp and Hugging Face tokenize chat prompts (BOS added by
    /// the tokenizer where its model expects it); otherwise each template segment is encoded as plain text, the model's
    /// EOS token after every segment but the last.
    /// </summary>
    public IReadOnlyList<int> EncodePrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        List<ChatMessage> conversation = [.. messages];
        if (!string.IsNullOrWhiteSpace(options?.Instructions)) conversation.Insert(0, new ChatMessage(ChatRole.System, options.Instructions));
        IReadOnlyList<string> segments = Template.FormatSegments(conversation);
        if (Template.WritesSpecialTokens) return (_owner?.PromptTokenizer ?? Tokenizer).EncodeToIds(string.Concat(segments));
        var ids = new List<int>();
        for (int i = 0; i < segments.Count; i++)
        {
            ids.AddRange(Tokenizer.EncodeToIds(segments[i]));
            if (i < segments.Count - 1) ids.Add(Model.Config.EosTokenId);
        }
        return ids;
    }

    /// <summary>
    /// Maps <see cref="ChatOptions"/> onto generation settings: <c>Temperature</c>, <c>TopK</c>, <c>TopP</c>,
    /// <c>FrequencyPenalty</c>, <c>PresencePenalty</c> and <c>Seed</c> onto the sampler, and from
    /// <c>AdditionalProperties</c> <c>min_p</c>, <c>repetition_penalty</c> (or llama.cpp's <c>repeat_penalty</c>) and
    /// <c>repeat_last_n</c> (the penalty window); unset ones from <see cref="AgileQuantChatClientOptions.DefaultSampling"/>
    /// (a seed outside the <see cref="int"/> range is folded into it); <c>MaxOutputTokens</c>; <c>StopSequences</c>
    /// (added to the template's own); the end tokens of <see cref="AgileQuantChatClientOptions.EndTokenIds"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range (negative temperature, top-p outside (0, 1], …).</exception>
    /// <exception cref="ArgumentException">An additional property named above is not a number.</exception>
    public GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        SamplingOptions defaults = _options.DefaultSampling;
        AdditionalPropertiesDictionary? extra = options?.AdditionalProperties;
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? defaults.Temperature,
            TopK = options?.TopK ?? defaults.TopK,
            TopP = options?.TopP ?? defaults.TopP,
            MinP = Number(extra, "min_p") ?? defaults.MinP,
            RepetitionPenalty = Number(extra, "repetition_penalty") ?? Number(extra, "repeat_penalty") ?? defaults.RepetitionPenalty,
            FrequencyPenalty = options?.FrequencyPenalty ?? defaults.FrequencyPenalty,
            PresencePenalty = options?.PresencePenalty ?? defaults.PresencePenalty,
            PenaltyWindow = Number(extra, "repeat_last_n") is float window ? (int)window : defaults.PenaltyWindow,
            Seed = options?.Seed is long seed ? SamplingOptions.FoldSeed(seed) : defaults.Seed,
        };
        sampling.Validate();
        int maxTokens = options?.MaxOutputTokens ?? _options.DefaultMaxOutputTokens;
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens, nameof(ChatOptions.MaxOutputTokens));
        return new GenerationOptions
        {
            Sampling = sampling,
            MaxTokens = maxTokens,
            StopSequences = [.. Template.StopSequences, .. options?.StopSequences ?? []],
            EndTokenIds = _options.EndTokenIds,
        };
    }

    /// <summary>A numeric additional property (any number type, or a JSON number as deserializers leave it), or null when absent.</summary>
    private static float? Number(AdditionalPropertiesDictionary? extra, string key)
    {
        if (extra is null || !extra.TryGetValue(key, out object? value) || value is null) return null;
        return value switch
        {
            float f => f,
            double d => (float)d,
            int i => i,
            long l => l,
            decimal m => (float)m,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Number } json => (float)json.GetDouble(),
            _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a number, found {value.GetType().Name} \"{value}\".", nameof(ChatOptions.AdditionalProperties)),
        };
    }

    /// <summary>
    /// Streams the assistant's reply: one update per non-empty text piece, then a final update carrying
    /// <see cref="UsageContent"/> (prompt tokens in, generated tokens out, EOS excluded) and the
    /// <see cref="ChatFinishReason"/> (<see cref="ChatFinishReason.Stop"/> at EOS or a stop sequence,
    /// <see cref="ChatFinishReason.Length"/> at <c>MaxOutputTokens</c> or a full context).
    /// </summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the model's context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; stops before the next token, and the client stays usable.</exception>
    /// <exception cref="ObjectDisposedException">The <see cref="LoadedModel"/> this client was made from (<c>AsChatClient</c>) is disposed.</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        _owner?.ThrowIfDisposed();
        GenerationOptions generation = ToGenerationOptions(options);
        IReadOnlyList<int> prompt = EncodePrompt(messages, options);
        string responseId = Guid.NewGuid().ToString("N");
        DateTimeOffset created = DateTimeOffset.UtcNow;
        int generated = 0;
        CoreFinishReason finish = CoreFinishReason.MaxTokens;
        await foreach (GenerationUpdate update in _generator.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
        {
            if (update.TokenId >= 0) generated++;
            if (update.Finish is CoreFinishReason f) finish = f;
            if (update.Text.Length > 0) yield return NewUpdate(responseId, created, [new TextContent(update.Text)]);
            cancellationToken.ThrowIfCancellationRequested();
            _owner?.ThrowIfDisposed();
        }
        var usage = new UsageDetails { InputTokenCount = prompt.Count, OutputTokenCount = generated, TotalTokenCount = prompt.Count + generated };
        ChatResponseUpdate last = NewUpdate(responseId, created, [new UsageContent(usage)]);
        last.FinishReason = finish is CoreFinishReason.EndOfSequence or CoreFinishReason.StopSequence ? ChatFinishReason.Stop : ChatFinishReason.Length;
        yield return last;
    }

    /// <summary>Generates the whole reply by collecting <see cref="GetStreamingResponseAsync"/> (text, usage and finish reason).</summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the model's context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the client stays usable.</exception>
    /// <exception cref="ObjectDisposedException">The <see cref="LoadedModel"/> this client was made from is disposed.</exception>
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);
    }

    /// <summary>
    /// Returns <see cref="Metadata"/> for <see cref="ChatClientMetadata"/>, the <see cref="TransformerModel"/>, the
    /// <see cref="Microsoft.ML.Tokenizers.Tokenizer"/>, the <see cref="ChatTemplate"/>, or this client for its own
    /// types; null for anything else or when <paramref name="serviceKey"/> is set.
    /// </summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType == typeof(TransformerModel)) return Model;
        if (serviceType.IsInstanceOfType(Tokenizer)) return Tokenizer;
        if (serviceType.IsInstanceOfType(Template)) return Template;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the model (a <see cref="LoadedModel"/>, disposed by its owner) outlives the client, and contexts end with their call.</summary>
    public void Dispose()
    {
    }

    private ChatResponseUpdate NewUpdate(string responseId, DateTimeOffset created, IList<AIContent> contents) => new(ChatRole.Assistant, contents)
    {
        ResponseId = responseId,
        MessageId = responseId,
        ModelId = Metadata.DefaultModelId,
        CreatedAt = created,
    };
}
