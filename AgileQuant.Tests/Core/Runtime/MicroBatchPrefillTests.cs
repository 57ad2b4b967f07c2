using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// A long call to <see cref="InferenceContext.Forward(ReadOnlySpan{int}, bool)"/> runs in micro-batches over one scratch
/// (issue 27: peak memory at depth): every logit and the cache it leaves behind are those of the same call in one pass, bit
/// for bit, for every KV type and weight scheme; the scratch holds a micro-batch's rows, not the call's; a call cancelled
/// between micro-batches leaves the context as it was; calls that rank rows over the whole call (token pruning) stay whole.
/// </summary>
public sealed class MicroBatchPrefillTests
{
    private static readonly KvCacheType?[] AllTypes = [null, KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8, KvCacheType.Q4];

    private static TransformerModel Stories260K(string scheme, KvCacheType? type)
    {
        var model = new TransformerModel(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);
        if (scheme != "FP32") model = ModelQuantizer.Quantize(model, QuantizationConfig.Parse(scheme));
        return new TransformerModel(model.Weights, model.Kernel, model.Options with { KvCache = type });
    }

    private static int[] Tokens(int count, int seed, int vocab) => Enumerable.Range(0, count).Select(i => (i * 37 + seed) % (vocab - 1) + 1).ToArray();

    private static IEnumerable<TestCaseData> SchemesAndTypes() =>
        from scheme in new[] { "FP32", "W8A8", "W4A8-RTN" }
        from type in AllTypes
        select new TestCaseData(scheme, type);

    [TestCaseSource(nameof(SchemesAndTypes))]
    public void MicroBatchesGiveTheLogitsAndTheCacheOfOnePass(string scheme, KvCacheType? type)
    {
        TransformerModel model = Stories260K(scheme, type);
        int vocab = model.Config.VocabSize;
        InferenceContext whole = model.CreateContext(), split = model.CreateContext();
        whole.MicroBatchTokens = int.MaxValue;
        split.MicroBatchTokens = 128;
        // 37 tokens first: the split call starts mid key group and mid attention block; 400 more: 4 micro-batches whose
        // boundaries fall on multiples of 64, the first one short
        int[] prefix = Tokens(37, 3, vocab), prompt = Tokens(400, 5, vocab);
        Assert.That(split.Forward(prefix), Is.EqualTo(whole.Forward(prefix)), "the prefix fits one micro-batch in both");
        int batches = 0;
        split.MicroBatchDone = _ => batches++;
        float[] expected = whole.Forward(prompt, allLogits: true), actual = split.Forward(prompt, allLogits: true);
        Assert.That(batches, Is.EqualTo(4), "the split call ran in micro-batches");
        Assert.That(expected, Has.All.Matches<float>(float.IsFinite), "the reference is finite");
        Assert.That(actual, Is.EqualTo(expected), "every position's logits, bit for bit");
        Assert.That(split.SurvivingTokenIndices, Is.EqualTo(Enumerable.Range(0, prompt.Length)));
        Assert.That((split.Length, split.KvCacheBytes), Is.EqualTo((whole.Length, whole.KvCacheBytes)));
        float[] w = expected.AsSpan(expected.Length - vocab).ToArray(), s = w;
        for (int step = 0; step < 40; step++) // decode reads every cached key and value: the caches hold the same
        {
            int next = AgileQuant.Core.Generation.TokenSampler.ArgMax(w);
            (w, s) = (whole.Forward([next]), split.Forward([next]));
            Assert.That(s, Is.EqualTo(w), $"decode step {step}");
        }
        // the last position's logits alone (the head multiplies one row, not 400), micro-batched and in one pass
        InferenceContext lastWhole = model.CreateContext(), lastSplit = model.CreateContext();
        lastWhole.MicroBatchTokens = int.MaxValue;
        lastSplit.MicroBatchTokens = 128;
        lastWhole.Forward(prefix);
        lastSplit.Forward(prefix);
        Assert.That(lastSplit.Forward(prompt), Is.EqualTo(lastWhole.Forward(prompt)), "last logits only");
    }

    [Test]
    public void TheScratchHoldsAMicroBatchNotTheCall()
    {
        TransformerModel model = Stories260K("W4A8-RTN", null);
        InferenceContext split = model.CreateContext(), whole = model.CreateContext();
        split.MicroBatchTokens = 128;
        whole.MicroBatchTokens = int.MaxValue;
        split.Forward(Tokens(500, 1, model.Config.VocabSize));
        whole.Forward(Tokens(500, 1, model.Config.VocabSize));
        // 4 shares of 125 rows; a boundary rounded down to a multiple of 64 makes one at most 125 + 63 rows
        Assert.That(split.ScratchRows, Is.InRange(125, 188));
        Assert.That(whole.ScratchRows, Is.EqualTo(500));
    }

    [TestCaseSource(nameof(AllTypes))]
    public void CancellingBetweenMicroBatchesLeavesTheContextAsItWas(KvCacheType? type)
    {
        TransformerModel model = Stories260K("W4A8-RTN", type);
        int vocab = model.Config.VocabSize;
        InferenceContext reference = model.CreateContext(), cancelled = model.CreateContext();
        cancelled.MicroBatchTokens = 128;
        // 20 tokens first: the per-channel key types hold a partial group that the cancelled call's first micro-batch completes
        reference.Forward(Tokens(20, 4, vocab));
        cancelled.Forward(Tokens(20, 4, vocab));
        using var source = new CancellationTokenSource();
        cancelled.MicroBatchDone = b => { if (b == 2) source.Cancel(); }; // three micro-batches done, the fourth stops
        Assert.Throws<OperationCanceledException>(() => cancelled.Forward(Tokens(450, 5, vocab), false, source.Token));
        cancelled.MicroBatchDone = null;
        Assert.That(cancelled.Length, Is.EqualTo(20), "the cancelled tokens are not held");
        Assert.That(cancelled.Forward(Tokens(450, 5, vocab)), Is.EqualTo(reference.Forward(Tokens(450, 5, vocab))), "the same call again: the same logits, bit for bit");
        float[] r = [];
        for (int step = 0; step < 20; step++)
        {
            float[] c = cancelled.Forward([step + 1]);
            r = reference.Forward([step + 1]);
            Assert.That(c, Is.EqualTo(r), $"decode step {step}");
        }
    }

    [Test]
    public void PrunedCallsRunInOnePass()
    {
        var fp32 = new TransformerModel(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);
        int layers = fp32.Config.NumLayers;
        var model = new TransformerModel(fp32.Weights, fp32.Kernel, fp32.Options with { Pruning = TokenPruningSchedule.Progressive(layers, layers / 2, 0.5) });
        InferenceContext context = model.CreateContext();
        context.MicroBatchTokens = 128;
        int batches = 0;
        context.MicroBatchDone = _ => batches++;
        context.Forward(Tokens(300, 2, model.Config.VocabSize));
        Assert.That(batches, Is.Zero, "pruning ranks the whole call's rows: no micro-batches");
        Assert.That(context.ScratchRows, Is.EqualTo(300));
    }
}
