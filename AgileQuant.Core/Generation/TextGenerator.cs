using System.Runtime.CompilerServices;
using AgileQuant.Core.Runtime;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Core.Generation;

/// <summary>The whole result of a non-streamed generation.</summary>
/// <param name="Text">The generated text (prompt excluded).</param>
/// <param name="PromptTokens">Number of prompt tokens (BOS included).</param>
/// <param name="Tokens">The generated token ids (EOS excluded).</param>
/// <param name="Finish">Why generation stopped.</param>
public sealed record GenerationResult(string Text, int PromptTokens, IReadOnlyList<int> Tokens, FinishReason Finish)
{
    /// <summary>Where the time went (prompt evaluation and decoding), as llama.cpp reports it.</summary>
    public GenerationTimings Timings { get; init; } = new(0, 0, 0);
}

/// <summary>Wall-clock time of one generation's two phases.</summary>
/// <param name="PromptSeconds">Prompt evaluation (prefill): the forward pass over every prompt token.</param>
/// <param name="DecodeSteps">Forward passes of one generated token each (the first generated token comes from the prompt's logits).</param>
/// <param name="DecodeSeconds">Time from the end of prompt evaluation to the end of generation: decode steps and sampling.</param>
public sealed record GenerationTimings(double PromptSeconds, int DecodeSteps, double DecodeSeconds)
{
    /// <summary>Prompt tokens evaluated per second, given their count.</summary>
    public double PromptTokensPerSecond(int promptTokens) => PromptSeconds > 0 ? promptTokens / PromptSeconds : 0;

    /// <summary>Decode steps per second (0 when there were none).</summary>
    public double DecodeTokensPerSecond => DecodeSteps > 0 && DecodeSeconds > 0 ? DecodeSteps / DecodeSeconds : 0;
}

/// <summary>
/// Generates text from a prompt with a <see cref="TransformerModel"/> and its tokenizer: prefill of the
/// whole prompt, then one token at a time, streamed as UTF-8-safe text pieces.
/// </summary>
public sealed class TextGenerator
{
    private readonly TransformerModel _model;
    private readonly Tokenizer _tokenizer;

    /// <summary>Creates a generator; the tokenizer must produce ids inside the model's vocabulary.</summary>
    public TextGenerator(TransformerModel model, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _model = model;
        _tokenizer = tokenizer;
    }

    /// <summary>Encodes <paramref name="prompt"/> (the tokenizer adds BOS where its model expects it).</summary>
    public IReadOnlyList<int> EncodePrompt(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return _tokenizer.EncodeToIds(prompt);
    }

    // The GenerateAsync overloads keep the optional parameters they shipped with; the token-list overload with
    // progress is the one added since, and its cancellation token is required so that no call is ambiguous.
#pragma warning disable RS0026, RS0027
    /// <summary>Streams generated text; the last update carries the <see cref="FinishReason"/>.</summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the context, or holds ids outside the vocabulary.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model stays usable.</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(string prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        IReadOnlyList<int> promptIds = EncodePrompt(prompt);
        await foreach (GenerationUpdate update in GenerateAsync(promptIds, options, cancellationToken).ConfigureAwait(false))
            yield return update;
    }

    /// <summary>Streams generated text from an already-tokenized prompt.</summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the context, or holds ids outside the vocabulary.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model stays usable.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) => Run(promptIds, options, null, cancellationToken);

    /// <summary>Generates to completion and returns the whole text, reporting each update to <paramref name="progress"/>.</summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the context, or holds ids outside the vocabulary.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model stays usable.</exception>
    public Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options, IProgress<GenerationUpdate>? progress, CancellationToken cancellationToken = default) =>
        GenerateAsync(EncodePrompt(prompt), options, progress, cancellationToken);

    /// <summary>Generates to completion from an already-tokenized prompt; the result carries the <see cref="GenerationTimings"/>.</summary>
    /// <exception cref="AgileQuantException">The prompt does not fit the context, or holds ids outside the vocabulary.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model stays usable.</exception>
    public async Task<GenerationResult> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options, IProgress<GenerationUpdate>? progress, CancellationToken cancellationToken)
#pragma warning restore RS0026, RS0027
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        var clock = new PhaseClock();
        FinishReason finish = FinishReason.MaxTokens;
        await foreach (GenerationUpdate update in Run(promptIds, options, clock, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.TokenId >= 0) tokens.Add(update.TokenId);
            if (update.Finish is FinishReason f) finish = f;
            progress?.Report(update);
        }
        clock.Stop();
        return new GenerationResult(text.ToString(), promptIds.Count, tokens, finish)
        {
            Timings = new GenerationTimings(clock.PromptSeconds, clock.DecodeSteps, clock.DecodeSeconds),
        };
    }

    private async IAsyncEnumerable<GenerationUpdate> Run(IReadOnlyList<int> promptIds, GenerationOptions? options, PhaseClock? clock,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        options ??= new GenerationOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxTokens);
        var sampler = new TokenSampler(options.Sampling);
        TransformerConfig config = _model.Config;
        if (promptIds.Count == 0) throw new AgileQuantException("The prompt encodes to no tokens; at least one (e.g. BOS) is needed.");
        if (promptIds.Count >= _model.ContextLength)
            throw new AgileQuantException($"The prompt has {promptIds.Count} tokens, but the context length is {_model.ContextLength} (at least one position must remain for generation).");
        int[] endTokens = options.StopAtEndOfSequence ? [.. options.EndTokenIds ?? [config.EosTokenId]] : [];

        cancellationToken.ThrowIfCancellationRequested();
        InferenceContext context = _model.CreateContext();
        int[] prompt = promptIds.ToArray();
        clock?.Start();
        float[] logits = await Task.Run(() => context.Forward(prompt, false, cancellationToken), cancellationToken).ConfigureAwait(false);
        clock?.EndPrompt();
        for (int i = Math.Max(0, prompt.Length - options.Sampling.PenaltyWindow); i < prompt.Length; i++) sampler.Accept(prompt[i]);
        var detokenizer = new IncrementalDetokenizer(_tokenizer, prompt[^1]);
        var stops = new StopSequenceMatcher(options.StopSequences);
        for (int generated = 0; ; generated++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (generated == options.MaxTokens) { yield return new GenerationUpdate("", -1, FinishReason.MaxTokens); yield break; }
            int next = sampler.Sample(logits);
            if (Array.IndexOf(endTokens, next) >= 0)
            {
                yield return new GenerationUpdate(stops.Flush(), -1, FinishReason.EndOfSequence);
                yield break;
            }
            sampler.Accept(next);
            string piece = stops.Add(detokenizer.Add(next), out bool stopped);
            if (stopped) { yield return new GenerationUpdate(piece, next, FinishReason.StopSequence); yield break; }
            if (context.Length == _model.ContextLength)
            {
                yield return new GenerationUpdate(piece + stops.Flush(), next, FinishReason.ContextFull);
                yield break;
            }
            if (generated + 1 == options.MaxTokens)
            {
                yield return new GenerationUpdate(piece + stops.Flush(), next, FinishReason.MaxTokens);
                yield break;
            }
            yield return new GenerationUpdate(piece, next, null);
            logits = await Task.Run(() => context.Forward([next], false, cancellationToken), cancellationToken).ConfigureAwait(false);
            clock?.DecodeStep();
        }
    }

    /// <summary>Measures prompt evaluation and decoding separately (the decode phase ends when the caller has consumed the last update).</summary>
    private sealed class PhaseClock
    {
        private readonly System.Diagnostics.Stopwatch _watch = new();
        private double _promptEnd;

        public double PromptSeconds => _promptEnd;

        public int DecodeSteps { get; private set; }

        public double DecodeSeconds { get; private set; }

        public void Start() => _watch.Restart();

        public void EndPrompt() => _promptEnd = _watch.Elapsed.TotalSeconds;

        public void DecodeStep() => DecodeSteps++;

        public void Stop() => DecodeSeconds = Math.Max(0, _watch.Elapsed.TotalSeconds - _promptEnd);
    }
}

/// <summary>Holds back text that could be the start of a stop sequence, and cuts the output where one appears.</summary>
internal sealed class StopSequenceMatcher
{
    private readonly IReadOnlyList<string> _stops;
    private string _held = "";

    public StopSequenceMatcher(IReadOnlyList<string> stops) => _stops = stops.Where(s => !string.IsNullOrEmpty(s)).ToArray();

    /// <summary>Adds a piece; returns the text safe to emit, and whether a stop sequence was reached.</summary>
    public string Add(string piece, out bool stopped)
    {
        stopped = false;
        if (_stops.Count == 0) return piece;
        string text = _held + piece;
        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0) { stopped = true; _held = ""; return text[..cut]; }
        // Keep the longest suffix that is a prefix of some stop sequence.
        int keep = 0;
        foreach (string stop in _stops)
            for (int len = Math.Min(stop.Length - 1, text.Length); len > keep; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(stop.AsSpan(0, len))) { keep = len; break; }
        _held = text[(text.Length - keep)..];
        return text[..(text.Length - keep)];
    }

    /// <summary>Returns and clears whatever is held back.</summary>
    public string Flush()
    {
        string held = _held;
        _held = "";
        return held;
    }
}
