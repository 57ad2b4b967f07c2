using System.Runtime.CompilerServices;
using AgileQuant.Core.Runtime;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Core.Generation;

/// <summary>The whole result of a non-streamed generation.</summary>
/// <param name="Text">The generated text (prompt excluded).</param>
/// <param name="PromptTokens">Number of prompt tokens (BOS included).</param>
/// <param name="Tokens">The generated token ids (EOS excluded).</param>
/// <param name="Finish">Why generation stopped.</param>
public sealed record GenerationResult(string Text, int PromptTokens, IReadOnlyList<int> Tokens, FinishReason Finish);

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
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        options ??= new GenerationOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxTokens);
        var sampler = new TokenSampler(options.Sampling);
        TransformerConfig config = _model.Config;
        if (promptIds.Count == 0) throw new AgileQuantException("The prompt encodes to no tokens; at least one (e.g. BOS) is needed.");
        if (promptIds.Count >= _model.ContextLength)
            throw new AgileQuantException($"The prompt has {promptIds.Count} tokens, but the context length is {_model.ContextLength} (at least one position must remain for generation).");

        cancellationToken.ThrowIfCancellationRequested();
        InferenceContext context = _model.CreateContext();
        int[] prompt = promptIds.ToArray();
        float[] logits = await Task.Run(() => context.Forward(prompt, false, cancellationToken), cancellationToken).ConfigureAwait(false);
        var detokenizer = new IncrementalDetokenizer(_tokenizer, prompt[^1]);
        var stops = new StopSequenceMatcher(options.StopSequences);
        for (int generated = 0; ; generated++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (generated == options.MaxTokens) { yield return new GenerationUpdate("", -1, FinishReason.MaxTokens); yield break; }
            int next = sampler.Sample(logits);
            if (options.StopAtEndOfSequence && next == config.EosTokenId)
            {
                yield return new GenerationUpdate(stops.Flush(), -1, FinishReason.EndOfSequence);
                yield break;
            }
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
        }
    }

    /// <summary>Generates to completion and returns the whole text.</summary>
    public async Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options, IProgress<GenerationUpdate>? progress, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<int> promptIds = EncodePrompt(prompt);
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        FinishReason finish = FinishReason.MaxTokens;
        await foreach (GenerationUpdate update in GenerateAsync(promptIds, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.TokenId >= 0) tokens.Add(update.TokenId);
            if (update.Finish is FinishReason f) finish = f;
            progress?.Report(update);
        }
        return new GenerationResult(text.ToString(), promptIds.Count, tokens, finish);
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
