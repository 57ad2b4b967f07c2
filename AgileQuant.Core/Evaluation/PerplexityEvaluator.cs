using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Evaluation;

/// <summary>How a text is cut into scored sequences.</summary>
public enum PerplexityProtocol
{
    /// <summary>Each document (BOS + its tokens) is one sequence, cut at the context length, scored from position 0.</summary>
    Document,

    /// <summary>All documents' tokens concatenated, cut into non-overlapping windows of the context length; positions restart in each window.</summary>
    Stream,
}

/// <summary>Result of a perplexity run.</summary>
/// <param name="Perplexity">exp(mean NLL).</param>
/// <param name="MeanNll">Mean negative log-likelihood per scored token, in nats.</param>
/// <param name="ScoredTokens">Number of predicted (scored) tokens: with token pruning, only surviving positions are scored.</param>
/// <param name="Sequences">Number of sequences (documents or windows) run.</param>
/// <param name="Protocol">The protocol used.</param>
/// <param name="ContextLength">The sequence length cap used.</param>
public sealed record PerplexityResult(double Perplexity, double MeanNll, long ScoredTokens, int Sequences, PerplexityProtocol Protocol, int ContextLength);

/// <summary>Progress of a long evaluation.</summary>
/// <param name="SequencesDone">Sequences finished.</param>
/// <param name="SequencesTotal">Sequences in all.</param>
/// <param name="ScoredTokens">Tokens scored so far.</param>
public readonly record struct EvaluationProgress(int SequencesDone, int SequencesTotal, long ScoredTokens);

/// <summary>
/// Perplexity of a model over tokenized documents: every position i of a sequence predicts token i+1,
/// <c>NLL = logsumexp(logits_i) − logits_i[t_{i+1}]</c>, <c>PPL = exp(Σ NLL / scored)</c>. With token pruning
/// (<see cref="RuntimeOptions.Pruning"/>) only the surviving positions are scored, as in the reference code; such a
/// perplexity is not comparable with a dense one without its scored-token count.
/// </summary>
public static class PerplexityEvaluator
{
    /// <summary>Cuts tokenized <paramref name="documents"/> (each already starting with BOS) into the sequences <paramref name="protocol"/> scores.</summary>
    public static IReadOnlyList<int[]> BuildSequences(IReadOnlyList<IReadOnlyList<int>> documents, PerplexityProtocol protocol, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 2);
        var sequences = new List<int[]>();
        if (protocol == PerplexityProtocol.Document)
        {
            foreach (IReadOnlyList<int> doc in documents)
                if (doc.Count >= 2) sequences.Add(doc.Take(contextLength).ToArray());
            return sequences;
        }
        int[] stream = documents.SelectMany(d => d).ToArray();
        for (int start = 0; start < stream.Length; start += contextLength)
        {
            int length = Math.Min(contextLength, stream.Length - start);
            if (length >= 2) sequences.Add(stream.AsSpan(start, length).ToArray());
        }
        return sequences;
    }

    /// <summary>Runs every sequence through <paramref name="model"/> and returns the perplexity.</summary>
    /// <param name="model">The model.</param>
    /// <param name="documents">Tokenized documents, each starting with BOS.</param>
    /// <param name="protocol">How documents are cut into sequences.</param>
    /// <param name="contextLength">Sequence length cap (at most the model's context length).</param>
    /// <param name="parallelism">Sequences evaluated at once, each in its own context (default: 1).</param>
    /// <param name="progress">Receives progress after each sequence.</param>
    /// <param name="cancellationToken">Stops the run between sequences.</param>
    public static PerplexityResult Evaluate(TransformerModel model, IReadOnlyList<IReadOnlyList<int>> documents, PerplexityProtocol protocol,
        int contextLength, int parallelism = 1, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (contextLength > model.ContextLength)
            throw new AgileQuantException($"Context length {contextLength} exceeds the model's {model.ContextLength}.");
        IReadOnlyList<int[]> sequences = BuildSequences(documents, protocol, contextLength);
        if (sequences.Count == 0) throw new AgileQuantException("Nothing to score: every document has fewer than 2 tokens.");
        var nll = new double[sequences.Count];
        var scored = new long[sequences.Count];
        int done = 0;
        long scoredSoFar = 0;
        var contexts = new System.Collections.Concurrent.ConcurrentBag<InferenceContext>();
        try
        {
            Parallel.For(0, sequences.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism), CancellationToken = cancellationToken }, i =>
            {
                if (!contexts.TryTake(out InferenceContext? context)) context = model.CreateContext();
                context.Reset();
                int[] seq = sequences[i];
                float[] logits = context.Forward(seq, allLogits: true);
                (nll[i], scored[i]) = SurvivingNll(logits, seq, context.SurvivingTokenIndices, model.Config.VocabSize);
                contexts.Add(context);
                int finished = Interlocked.Increment(ref done);
                long total = Interlocked.Add(ref scoredSoFar, scored[i]);
                progress?.Report(new EvaluationProgress(finished, sequences.Count, total));
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is AgileQuantException) is Exception first)
        {
            // Parallel.For wraps what the sequences threw: surface the library's own error (e.g. NaN logits) as documented.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
            throw;
        }
        double totalNll = 0;
        long totalScored = 0;
        for (int i = 0; i < nll.Length; i++) { totalNll += nll[i]; totalScored += scored[i]; }
        double mean = totalNll / totalScored;
        return new PerplexityResult(Math.Exp(mean), mean, totalScored, sequences.Count, protocol, contextLength);
    }

    /// <summary>Σ over positions i &lt; n−1 of <c>logsumexp(logits_i) − logits_i[tokens[i+1]]</c>, logits (n, vocab).</summary>
    public static double SequenceNll(ReadOnlySpan<float> logits, ReadOnlySpan<int> tokens, int vocab)
    {
        double sum = 0;
        for (int i = 0; i + 1 < tokens.Length; i++)
            sum += TokenNll(logits.Slice(i * vocab, vocab), tokens[i + 1]);
        return sum;
    }

    /// <summary>
    /// Σ over surviving positions of <c>logsumexp(logits_k) − logits_k[tokens[i_k+1]]</c>, where row k of
    /// <paramref name="logits"/> (surviving, vocab) belongs to original position <c>i_k = surviving[k]</c>; positions
    /// without a next token are not scored. Returns the sum and the number of scored positions.
    /// </summary>
    public static (double Nll, long Scored) SurvivingNll(ReadOnlySpan<float> logits, ReadOnlySpan<int> tokens, IReadOnlyList<int> surviving, int vocab)
    {
        ArgumentNullException.ThrowIfNull(surviving);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocab, 1);
        if (logits.Length != (long)surviving.Count * vocab)
            throw new ArgumentException($"Expected {surviving.Count}×{vocab} logits, found {logits.Length}.", nameof(logits));
        double sum = 0;
        long scored = 0;
        for (int k = 0; k < surviving.Count; k++)
        {
            int position = surviving[k];
            if ((uint)position >= (uint)tokens.Length) throw new ArgumentException($"Surviving position {position} is outside the {tokens.Length} tokens.", nameof(surviving));
            if (position + 1 >= tokens.Length) continue;
            sum += TokenNll(logits.Slice(k * vocab, vocab), tokens[position + 1]);
            scored++;
        }
        return (sum, scored);
    }

    /// <summary><c>logsumexp(logits) − logits[target]</c>, in double precision.</summary>
    public static double TokenNll(ReadOnlySpan<float> logits, int target)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        for (int j = 0; j < logits.Length; j++) sum += Math.Exp(logits[j] - (double)max);
        double nll = max + Math.Log(sum) - logits[target];
        if (double.IsNaN(nll)) throw new AgileQuantException("The model produced NaN logits; the perplexity is undefined.");
        return nll;
    }
}
