using System.Collections.Concurrent;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Evaluation;

/// <summary>How closely one model's next-token distributions follow another's over the same tokens.</summary>
/// <param name="MeanKlDivergence">Mean over positions of <c>KL(P_reference ‖ P_candidate)</c>, in nats.</param>
/// <param name="Top1Agreement">Fraction of positions where both models' argmax agree.</param>
/// <param name="Positions">Number of positions compared (= scored tokens): with token pruning, those surviving in both models.</param>
/// <param name="Candidate">The candidate's perplexity over the same positions.</param>
/// <param name="Reference">The reference's perplexity over the same positions.</param>
public sealed record DistributionComparisonResult(double MeanKlDivergence, double Top1Agreement, long Positions, PerplexityResult Candidate, PerplexityResult Reference);

/// <summary>Compares a candidate model (e.g. quantized) with a reference (e.g. FP32) position by position, in one pass over the text.</summary>
public static class DistributionComparison
{
    /// <summary>Runs both models over the same sequences; returns KL, top-1 agreement and both perplexities.</summary>
    public static DistributionComparisonResult Compare(TransformerModel reference, TransformerModel candidate, IReadOnlyList<IReadOnlyList<int>> documents,
        PerplexityProtocol protocol, int contextLength, int parallelism = 1, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        if (reference.Config.VocabSize != candidate.Config.VocabSize)
            throw new AgileQuantException($"The models' vocabularies differ ({reference.Config.VocabSize} vs {candidate.Config.VocabSize}).");
        int limit = Math.Min(reference.ContextLength, candidate.ContextLength);
        if (contextLength > limit) throw new AgileQuantException($"Context length {contextLength} exceeds the models' {limit}.");
        IReadOnlyList<int[]> sequences = PerplexityEvaluator.BuildSequences(documents, protocol, contextLength);
        if (sequences.Count == 0) throw new AgileQuantException("Nothing to score: every document has fewer than 2 tokens.");
        int vocab = reference.Config.VocabSize;
        var perSequence = new (double Kl, long Agree, double RefNll, double CandNll, long Positions)[sequences.Count];
        var pool = new ConcurrentBag<(InferenceContext Ref, InferenceContext Cand)>();
        int done = 0;
        long positionsSoFar = 0;
        Parallel.For(0, sequences.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism), CancellationToken = cancellationToken }, s =>
        {
            if (!pool.TryTake(out var contexts)) contexts = (reference.CreateContext(), candidate.CreateContext());
            contexts.Ref.Reset();
            contexts.Cand.Reset();
            int[] seq = sequences[s];
            float[] p = contexts.Ref.Forward(seq, allLogits: true);
            float[] q = contexts.Cand.Forward(seq, allLogits: true);
            // with token pruning, logits rows belong to the surviving positions: compare those both models kept
            int[] referenceRow = new int[seq.Length];
            Array.Fill(referenceRow, -1);
            IReadOnlyList<int> referenceKept = contexts.Ref.SurvivingTokenIndices, candidateKept = contexts.Cand.SurvivingTokenIndices;
            for (int k = 0; k < referenceKept.Count; k++) referenceRow[referenceKept[k]] = k;
            double kl = 0, refNll = 0, candNll = 0;
            long agree = 0, compared = 0;
            for (int k = 0; k < candidateKept.Count; k++)
            {
                int i = candidateKept[k];
                if (i + 1 >= seq.Length || referenceRow[i] < 0) continue;
                compared++;
                ReadOnlySpan<float> pr = p.AsSpan(referenceRow[i] * vocab, vocab), qr = q.AsSpan(k * vocab, vocab);
                kl += KlDivergence(pr, qr);
                if (Generation.TokenSampler.ArgMax(pr) == Generation.TokenSampler.ArgMax(qr)) agree++;
                refNll += PerplexityEvaluator.TokenNll(pr, seq[i + 1]);
                candNll += PerplexityEvaluator.TokenNll(qr, seq[i + 1]);
            }
            perSequence[s] = (kl, agree, refNll, candNll, compared);
            pool.Add(contexts);
            int finished = Interlocked.Increment(ref done);
            progress?.Report(new EvaluationProgress(finished, sequences.Count, Interlocked.Add(ref positionsSoFar, compared)));
        });
        long positions = perSequence.Sum(r => r.Positions);
        double totalKl = perSequence.Sum(r => r.Kl), refTotal = perSequence.Sum(r => r.RefNll), candTotal = perSequence.Sum(r => r.CandNll);
        long agreeTotal = perSequence.Sum(r => r.Agree);
        PerplexityResult Result(double nll) => new(Math.Exp(nll / positions), nll / positions, positions, sequences.Count, protocol, contextLength);
        return new DistributionComparisonResult(totalKl / positions, (double)agreeTotal / positions, positions, Result(candTotal), Result(refTotal));
    }

    /// <summary><c>KL(softmax(p) ‖ softmax(q)) = Σ_j P_j (log P_j − log Q_j)</c>, in double precision.</summary>
    public static double KlDivergence(ReadOnlySpan<float> referenceLogits, ReadOnlySpan<float> candidateLogits)
    {
        double lp = LogSumExp(referenceLogits), lq = LogSumExp(candidateLogits), kl = 0;
        for (int j = 0; j < referenceLogits.Length; j++)
        {
            double logP = referenceLogits[j] - lp, logQ = candidateLogits[j] - lq;
            kl += Math.Exp(logP) * (logP - logQ);
        }
        return Math.Max(0, kl);
    }

    private static double LogSumExp(ReadOnlySpan<float> x)
    {
        double max = System.Numerics.Tensors.TensorPrimitives.Max(x), sum = 0;
        for (int j = 0; j < x.Length; j++) sum += Math.Exp(x[j] - max);
        return max + Math.Log(sum);
    }
}
