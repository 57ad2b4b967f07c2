using AgileQuant.Core.Runtime;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models;

/// <summary>
/// A model loaded from disk with its tokenizer (when one was found): the immutable weights that every
/// <see cref="InferenceContext"/> (per-conversation state: KV cache and scratch buffers) shares. Dispose it when done:
/// it releases the weights and whatever the load left open; afterwards <see cref="Model"/>, <see cref="Tokenizer"/>,
/// <see cref="CreateContext"/> and chat clients made from it throw <see cref="ObjectDisposedException"/>.
/// <see cref="Dispose"/> is idempotent and safe to call from several threads at once; work already running when it is
/// called finishes safely (the weights are managed memory), new work is refused.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private TransformerModel? _model;
    private Tokenizer? _tokenizer;
    private IReadOnlyList<IDisposable> _owned;
    private int _disposed;
    private readonly IReadOnlyList<int>? _endTokenIds;
    private readonly Func<Tokenizer>? _specialTokenTokenizerFactory;
    private readonly Lazy<Tokenizer>? _specialTokenTokenizer;

    /// <summary>Wraps a model that owns nothing beyond its managed weights.</summary>
    /// <param name="model">The runnable model.</param>
    /// <param name="tokenizer">Its tokenizer, or null when none was found or given.</param>
    /// <param name="sourcePath">Where the weights came from.</param>
    /// <param name="format">The on-disk format (<c>llama2c</c>, <c>huggingface</c> or <c>agilequant</c>, a quantized checkpoint).</param>
    public LoadedModel(TransformerModel model, Tokenizer? tokenizer, string sourcePath, string format)
        : this(model, tokenizer, sourcePath, format, [])
    {
    }

    /// <summary>Wraps a model that also owns <paramref name="owned"/> (e.g. a file mapping its weights live in), released on <see cref="Dispose"/>.</summary>
    /// <param name="model">The runnable model.</param>
    /// <param name="tokenizer">Its tokenizer, or null.</param>
    /// <param name="sourcePath">Where the weights came from.</param>
    /// <param name="format">The on-disk format.</param>
    /// <param name="owned">Resources disposed (in order) with the model.</param>
    public LoadedModel(TransformerModel model, Tokenizer? tokenizer, string sourcePath, string format, IReadOnlyList<IDisposable> owned)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentException.ThrowIfNullOrEmpty(format);
        ArgumentNullException.ThrowIfNull(owned);
        _model = model;
        _tokenizer = tokenizer;
        _owned = owned;
        SourcePath = sourcePath;
        Format = format;
    }

    /// <summary>The runnable model (weights, kernel, runtime options).</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    public TransformerModel Model
    {
        get
        {
            ThrowIfDisposed();
            return Volatile.Read(ref _model) ?? throw new ObjectDisposedException(nameof(LoadedModel));
        }
    }

    /// <summary>The tokenizer, or null when none was found or given.</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    public Tokenizer? Tokenizer
    {
        get
        {
            ThrowIfDisposed();
            return Volatile.Read(ref _tokenizer);
        }
    }

    /// <summary>Where the weights came from (still readable after <see cref="Dispose"/>).</summary>
    public string SourcePath { get; }

    /// <summary>The on-disk format: <c>llama2c</c>, <c>huggingface</c>, <c>gguf</c> or <c>agilequant</c> (a quantized checkpoint).</summary>
    public string Format { get; }

    /// <summary>
    /// The token ids that end generation, as the model declares them: its EOS, and for llama2.c checkpoints also BOS
    /// (llama2.c's <c>run.c</c> stops there: its models start the next story with BOS); for Hugging Face folders the
    /// <c>eos_token_id</c> of <c>generation_config.json</c> too. Unset: the model's EOS.
    /// </summary>
    public IReadOnlyList<int> EndTokenIds
    {
        get => _endTokenIds ?? [Model.Config.EosTokenId];
        init => _endTokenIds = value is null ? null : [.. value.Distinct()];
    }

    /// <summary>
    /// The chat template the model's files carry (the Jinja text of GGUF <c>tokenizer.chat_template</c>, or of a Hugging
    /// Face folder's <c>chat_template.jinja</c> / <c>tokenizer_config.json</c> <c>chat_template</c>), or null when they carry
    /// none. <c>AsChatClient</c> formats conversations in the format it recognises in it (<c>ChatTemplate.FromTemplateText</c>).
    /// </summary>
    public string? ChatTemplateText { get; init; }

    /// <summary>Where <see cref="ChatTemplateText"/> was read (file and key), for error messages.</summary>
    internal string? ChatTemplateOrigin { get; init; }

    /// <summary>
    /// Builds the model's tokenizer with special tokens parsed from text (for chat prompts that spell them, as llama.cpp
    /// tokenizes them); null when the tokenizer has no such variant. Built on first use.
    /// </summary>
    internal Func<Tokenizer>? SpecialTokenTokenizerFactory
    {
        get => _specialTokenTokenizerFactory;
        init
        {
            _specialTokenTokenizerFactory = value;
            _specialTokenTokenizer = value is null ? null : new Lazy<Tokenizer>(value, LazyThreadSafetyMode.ExecutionAndPublication);
        }
    }

    /// <summary>The tokenizer with special tokens parsed (<see cref="SpecialTokenTokenizerFactory"/>), or <see cref="Tokenizer"/> when there is none.</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    internal Tokenizer? PromptTokenizer => _specialTokenTokenizer is { } lazy && Tokenizer is not null ? lazy.Value : Tokenizer;

    /// <summary>The files the tokenizer was read from (null: none, or it came from inside the model file, as a GGUF vocabulary does).</summary>
    public TokenizerSource? TokenizerSource { get; init; }

    /// <summary>True once <see cref="Dispose"/> has been called.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// A new inference context (KV cache and scratch buffers) over the shared weights: cheap next to the model, one per
    /// conversation or thread; contexts are not thread-safe, the model is.
    /// </summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    public InferenceContext CreateContext() => Model.CreateContext();

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the model is disposed.</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/>.</exception>
    public void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <summary>
    /// A loaded model that runs <paramref name="model"/> (the same weights under other runtime options) with this one's
    /// tokenizer, metadata and owned resources, which move to it: this one must not be disposed or used afterwards.
    /// </summary>
    internal LoadedModel WithModel(TransformerModel model)
    {
        IReadOnlyList<IDisposable> owned = _owned;
        _owned = [];
        return new LoadedModel(model, Tokenizer, SourcePath, Format, owned)
        {
            EndTokenIds = _endTokenIds!,
            TokenizerSource = TokenizerSource,
            ChatTemplateText = ChatTemplateText,
            ChatTemplateOrigin = ChatTemplateOrigin,
            SpecialTokenTokenizerFactory = SpecialTokenTokenizerFactory,
        };
    }

    /// <summary>Releases the weights and owned resources. Calling it again, also from several threads at once, does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Volatile.Write(ref _model, null);
        Volatile.Write(ref _tokenizer, null);
        IReadOnlyList<IDisposable> owned = _owned;
        _owned = [];
        foreach (IDisposable resource in owned) resource.Dispose();
    }
}

/// <summary>Where a <see cref="LoadedModel"/>'s tokenizer was read from.</summary>
/// <param name="Paths">The tokenizer file, or the tokenizer files of a Hugging Face folder.</param>
/// <param name="IsDirectory">True when <paramref name="Paths"/> are a Hugging Face folder's tokenizer files, read together.</param>
public sealed record TokenizerSource(IReadOnlyList<string> Paths, bool IsDirectory);
