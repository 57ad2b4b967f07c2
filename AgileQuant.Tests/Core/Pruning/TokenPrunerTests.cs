using AgileQuant.Core.Pruning;

namespace AgileQuant.Tests.Core.Pruning;

/// <summary>TokenPruner and TokenPruningSchedule against hand-computed attention maps (docs/method.md §3).</summary>
[TestFixture]
public class TokenPrunerTests
{
    // A[h, i, 0] for 2 heads × 6 tokens, laid out (heads, n); s = [2, .50, .20, .45, .40, .03] by hand.
    private static readonly float[] StartAttention =
    [
        1f, 0.30f, 0.05f, 0.40f, 0.10f, 0.02f,
        1f, 0.20f, 0.15f, 0.05f, 0.30f, 0.01f,
    ];

    private static float[] Scores()
    {
        float[] scores = new float[6];
        TokenPruner.ComputeScores(StartAttention, heads: 2, n: 6, scores);
        return scores;
    }

    [Test]
    public void ScoresAreAttentionToTheStartTokenSummedOverHeads()
    {
        Assert.That(Scores(), Is.EqualTo(new[] { 2f, 0.50f, 0.20f, 0.45f, 0.40f, 0.03f }).Within(1e-6f));
    }

    [Test]
    public void LowestDirectionPrunesTheHandComputedLowestTokens()
    {
        // candidates 1..4 (start and last excluded) ranked ascending: 2 (.20), 4 (.40), 3 (.45), 1 (.50); floor(0.5·6) = 3
        Assert.That(TokenPruner.SelectPruned(Scores(), 0.5, firstIsStart: true, PruningDirection.Lowest), Is.EqualTo(new[] { 2, 3, 4 }));
        Assert.That(TokenPruner.SelectPruned(Scores(), 0.2, firstIsStart: true, PruningDirection.Lowest), Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void HighestDirectionPrunesTheHandComputedHighestTokens()
    {
        Assert.That(TokenPruner.SelectPruned(Scores(), 0.5, firstIsStart: true, PruningDirection.Highest), Is.EqualTo(new[] { 1, 3, 4 }));
    }

    [Test]
    public void StartAndLastTokensSurviveEvenWhenTheyScoreLowest()
    {
        // the last token scores lowest (.03) and is kept; without a start token row 0 becomes a candidate
        float[] scores = [0.01f, 0.5f, 0.6f, 0.7f, 0.8f, 0.001f];
        int[] pruned = TokenPruner.SelectPruned(scores, 0.99, firstIsStart: true, PruningDirection.Lowest);
        Assert.That(pruned, Is.EqualTo(new[] { 1, 2, 3, 4 }));
        Assert.That(TokenPruner.SelectPruned(scores, 0.2, firstIsStart: false, PruningDirection.Lowest), Is.EqualTo(new[] { 0 }));
    }

    [Test]
    public void TiesAreBrokenByIndexInBothDirections()
    {
        float[] scores = [2f, 0.5f, 0.5f, 0.5f, 0.5f, 0f];
        Assert.That(TokenPruner.SelectPruned(scores, 0.34, true, PruningDirection.Lowest), Is.EqualTo(new[] { 1, 2 }));
        Assert.That(TokenPruner.SelectPruned(scores, 0.34, true, PruningDirection.Highest), Is.EqualTo(new[] { 1, 2 }));
    }

    [Test]
    public void LowerBitSetIsInheritedAndRemappedAcrossTwoPruningLayers()
    {
        var pruner = new TokenPruner();
        pruner.Begin(7, firstIsStart: true);
        // layer A: candidates 1..5 ascending 1 (.1), 3 (.2), 5 (.4), 2 (.5), 4 (.9)
        // prune floor(0.2·7) = 1 → {1}; lower-bit floor(0.3·7) = 2 next lowest → {3, 5}
        pruner.Select([3.0f, 0.1f, 0.5f, 0.2f, 0.9f, 0.4f, 0.0f], 0.2, 0.3, PruningDirection.Lowest);
        pruner.Compact();
        Assert.That(pruner.OriginalIndices.ToArray(), Is.EqualTo(new[] { 0, 2, 3, 4, 5, 6 }));
        Assert.That(pruner.LowBit.ToArray(), Is.EqualTo(new[] { false, false, true, false, true, false }));
        Assert.That(pruner.KeptRows.ToArray(), Is.EqualTo(new[] { 0, 2, 3, 4, 5, 6 }));

        // layer B over the 6 survivors (rows = original 0, 2, 3, 4, 5, 6): candidates rows 1..4 ascending
        // 4 (.1, original 5), 1 (.3, original 2), 3 (.6, original 4), 2 (.8, original 3)
        // prune floor(0.2·6) = 1 → row 4 (original 5, which was lower-bit); lower-bit target floor(0.5·6) = 3:
        // inherited row 2 (original 3) plus rows 1 and 3 (originals 2 and 4)
        pruner.Select([2.0f, 0.3f, 0.8f, 0.6f, 0.1f, 0.05f], 0.2, 0.5, PruningDirection.Lowest);
        Assert.That(pruner.PrunedCount, Is.EqualTo(1));
        pruner.Compact();
        Assert.That(pruner.OriginalIndices.ToArray(), Is.EqualTo(new[] { 0, 2, 3, 4, 6 }));
        Assert.That(pruner.LowBit.ToArray(), Is.EqualTo(new[] { false, true, true, true, false }));
        Assert.That(pruner.LowBitCount, Is.EqualTo(3));
    }

    [Test]
    public void ProgressiveScheduleKeepsOneMinusBetaAfterAllPrunedLayers()
    {
        TokenPruningSchedule schedule = TokenPruningSchedule.Progressive(numLayers: 8, startLayer: 4, beta: 0.5);
        double gamma = 1 - Math.Pow(0.5, 1.0 / 4);
        for (int l = 0; l < 4; l++) Assert.That(schedule.RatioAt(l), Is.Zero, $"layer {l}");
        for (int l = 4; l < 8; l++) Assert.That(schedule.RatioAt(l), Is.EqualTo(gamma).Within(1e-15), $"layer {l}");
        Assert.That(Math.Pow(1 - gamma, 4), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(schedule.RatioAt(8), Is.Zero);
    }

    [Test]
    public void InvalidRatiosAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenPruningSchedule([0.5, 1.0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenPruningSchedule([0.6], [0.5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenPruningSchedule([double.NaN]));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenPruningSchedule.Progressive(4, 4, 0.5));
    }
}
