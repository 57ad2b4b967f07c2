using AgileQuant.Core.Runtime;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// A decode step allocates its logits and nothing else on the calling thread: the row-wise steps and attention reuse
/// their jobs on the kernels' threads instead of allocating a delegate or closure per call. FP32 weights: the quantized
/// kernels' own per-call allocations are theirs to test.
/// </summary>
public sealed class DecodeAllocationTests
{
    [Test]
    public void AnFp32DecodeStepAllocatesOnlyItsLogits()
    {
        var model = new TransformerModel(Llama2cCheckpoint.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin")), TestKernels.Default);
        InferenceContext context = model.CreateContext();
        context.Forward(Enumerable.Range(1, 20).ToArray());
        context.Forward([5]); // JIT, the kernels' per-thread scratch
        context.Forward([6]);

        long before = GC.GetAllocatedBytesForCurrentThread();
        float[] logits = context.Forward([7]);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        // the logits array and the one-element SurvivingTokenIndices array, each with its object header
        long expected = logits.Length * sizeof(float) + sizeof(int) + 2 * 32;
        Assert.That(allocated, Is.LessThanOrEqualTo(expected), $"{allocated} bytes allocated; the logits take {logits.Length * sizeof(float)}");
    }
}
