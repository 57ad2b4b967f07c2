using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Evaluation;

/// <summary>How closely one model's next-token distributions follow another's over the same tokens.</summary>
/// <param name="MeanKlDivergence">Mean over positions of <c>KL(P_reference ‖ P_candidate)</c>, in nats.</param>
/// <param name="Top1Agreement">Fraction of positions where both models' argmax agree.</param>
/// <param name="Positions">Number of positions compared.</param>
public sealed record DistributionComparisonResult(double MeanKlDivergence, double Top1Agreement, long Positions);

/// <summary>Compares a candidate model (e.g. quantized) with a reference (e.g. FP32) position by position.</summary>
public static class DistributionComparison
{
    /// <summary>Runs both models over the same sequences and compares every position's distribution.</summary>
    public static DistributionComparisonResult Compare(TransformerModel reference, TransformerModel candidate, IReadOnlyList<IReadOnlyList<int>> documents,
        PerplexityProtocol protocol, int contextLength, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        if (reference.Config.VocabSize != candidate.Config.VocabSize)
            throw new AgileQuantException($"The models' vocabularies differ ({reference.Config.VocabSize} vs {candidate.Config.VocabSize}).");
        IReadOnlyList<int[]> sequences = PerplexityEvaluator.BuildSequences(documents, protocol, contextLength);
        int vocab = reference.Config.VocabSize;
        InferenceContext refContext = reference.CreateContext(), candContext = candidate.CreateContext();
        double kl = 0;
        long agree = 0, positions = 0;
        for (int s = 0; s < sequences.Count; s++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            refContext.Reset();
            candContext.Reset();
            float[] p = refContext.Forward(sequences[s], allLogits: true);
            float[] q = candContext.Forward(sequences[s], allLogits: true);
            for (int i = 0; i + 1 < sequences[s].Length; i++)
            {
                ReadOnlySpan<float> pr = p.AsSpan(i * vocab, vocab), qr = q.AsSpan(i * vocab, vocab);
                kl += KlDivergence(pr, qr);
                if (TokenArgMax(pr) == TokenArgMax(qr)) agree++;
                positions++;
            }
            progress?.Report(new EvaluationProgress(s + 1, sequences.Count, positions));
        }
        return new DistributionComparisonResult(kl / positions, (double)agree / positions, positions);
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

    private static int TokenArgMax(ReadOnlySpan<float> x) => Generation.TokenSampler.ArgMax(x);
}
