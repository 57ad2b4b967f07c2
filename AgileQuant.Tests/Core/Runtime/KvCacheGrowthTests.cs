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
        Assert.That(logits.All(float.IsFinite), Is.True);
        Assert.That(() => context.Forward([1]), Throws.InstanceOf<AgileQuant.Core.AgileQuantException>());
        context.Reset();
        Assert.That(context.Forward([1]), Is.EqualTo(model.CreateContext().Forward([1])), "after Reset the grown cache starts a new sequence");
    }
}
