using AgileQuant.Core.Runtime;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// The KV cache grows with the sequence instead of being allocated for the whole context up front: a fresh context
/// fed a few tokens allocates a small fraction of a full cache, and one grown across every step up to the context
/// length still holds every token (the stories260K golden tests check the logits of such token-by-token runs).
/// </summary>
public sealed class KvCacheGrowthTests
{
    private static TransformerModel Stories260K() =>
        new(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);

    [Test]
    public void AFreshContextAllocatesForTheTokensItHoldsNotTheContextLength()
    {
        TransformerModel model = Stories260K();
        TransformerConfig c = model.Config;
        long fullCache = 2L * c.NumLayers * c.MaxSequenceLength * c.KvDim * sizeof(float); // keys and values, every slot
        model.CreateContext().Forward([1, 2, 3, 4]); // JIT and the kernels' per-thread scratch, outside the measurement

        long before = GC.GetTotalAllocatedBytes(precise: true);
        InferenceContext context = model.CreateContext();
        context.Forward([1, 2, 3, 4]);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        Assert.That(allocated, Is.LessThan(fullCache / 4), $"a full cache is {fullCache} bytes");
        Assert.That(context.Length, Is.EqualTo(4));
    }

    [Test]
    public void ACacheGrownToTheContextLengthHoldsEveryTokenAndRefusesOneMore()
    {
        TransformerModel model = Stories260K();
        int max = model.Config.MaxSequenceLength;
        InferenceContext context = model.CreateContext();
        float[] logits = context.Forward([1]);
        for (int fed = 1; fed < max; fed += 37)
            logits = context.Forward(Enumerable.Range(0, Math.Min(37, max - fed)).Select(i => (fed + i) % model.Config.VocabSize).ToArray());
        Assert.That(context.Length, Is.EqualTo(max));
        // The reference: the same 512 tokens as one prefill (one causal pass, no cache growth between chunks); the two
        // differ only in the order of float sums (attention over 37-token chunks against one tile pass), a relative 1e-6.
        int[] all = [1, .. Enumerable.Range(1, max - 1).Select(p => p % model.Config.VocabSize)];
        float[] oneShot = model.CreateContext().Forward(all);
        Assert.That(oneShot, Has.All.Matches<float>(float.IsFinite), "the reference is finite");
        double scale = oneShot.Max(v => Math.Abs((double)v));
        TestContext.Out.WriteLine($"last logits grown in 37-token chunks vs one prefill: max |Δ| {logits.Zip(oneShot).Max(p => Math.Abs((double)p.First - p.Second)):G3} (max |logit| {scale:G3})");
        Assert.That(logits, Is.EqualTo(oneShot).Within(1e-4 * scale), "the grown cache's last logits equal one prefill's");
        Assert.That(() => context.Forward([1]), Throws.InstanceOf<AgileQuant.Core.AgileQuantException>());
        context.Reset();
        Assert.That(context.Forward([1]), Is.EqualTo(model.CreateContext().Forward([1])), "after Reset the grown cache starts a new sequence");
    }
}
