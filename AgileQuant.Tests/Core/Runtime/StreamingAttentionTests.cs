using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// The streaming attention (blocked, online softmax) over f16 rows against the exact path over FP32 slot rows, on keys
/// and values that fp16 holds exactly (multiples of 1/64 below 8), so the two differ only in the order of their FP32
/// sums: outputs and start-token probabilities agree within 1e-5 of the weighted magnitudes, for a prefill of several
/// slot blocks and decode steps, with GQA, ALiBi, padding (a row with nothing visible included), a sliding window and the
/// log2 softmax, on several threads. The exact path's window and masks are checked against the double reference of
/// <see cref="KvAttentionBoundTests"/> through this agreement.
/// </summary>
public sealed unsafe class StreamingAttentionTests
{
    private const int Context = 200;

    [TestCase(4, 4, 32, false, 0, false, false)]
    [TestCase(8, 2, 64, true, 0, true, false)]
    [TestCase(4, 2, 16, false, 40, true, false)]
    [TestCase(8, 4, 8, true, 70, true, false)]
    [TestCase(4, 2, 32, false, 0, false, true)]
    public void AgreesWithTheExactPathOnValuesFp16Holds(int heads, int kvHeads, int headDim, bool alibi, int window, bool padding, bool log2)
    {
        TransformerWeights weights = RandomLlama.Create(heads, kvHeads, headDim, context: Context, positions: alibi ? PositionKind.Alibi : PositionKind.Rotary,
            slidingWindow: window);
        var attention = new AttentionQuantization { Log2Softmax = log2 };
        var streaming = new TransformerModel(weights, TestKernels.Default, new RuntimeOptions { KvCache = KvCacheType.F16, Attention = attention });
        var exact = new TransformerModel(weights, TestKernels.Default, new RuntimeOptions { KvCache = KvCacheType.F32, Attention = attention });
        TransformerConfig c = weights.Config;
        var random = new Random(heads * 7 + headDim);
        float Exact() => random.Next(-500, 500) / 64f;
        float[] keys = Enumerable.Range(0, Context * c.KvDim).Select(_ => Exact()).ToArray(), values = Enumerable.Range(0, Context * c.KvDim).Select(_ => Exact()).ToArray();
        float[] queries = Enumerable.Range(0, Context * heads * headDim).Select(_ => Exact() / 8).ToArray();
        // slots 0-2 are padding: the first rows see nothing (zero output) until slot 3
        bool[] masked = Enumerable.Range(0, Context).Select(i => padding && (i < 3 || i % 17 == 5)).ToArray();
        var a = new Side(streaming);
        var b = new Side(exact);
        int start = 0;
        foreach (int n in new[] { 150, 1, 1, 1, 30, 1 })
        {
            (float[] outA, float[] startA) = a.Feed(start, n, keys, values, queries, masked);
            (float[] outB, float[] startB) = b.Feed(start, n, keys, values, queries, masked);
            for (int i = 0; i < n; i++)
                for (int h = 0; h < heads; h++)
                {
                    int at = i * heads * headDim + h * headDim;
                    double magnitude = Enumerable.Range(at, headDim).Max(k => Math.Abs(outB[k])) + 8;
                    for (int d = 0; d < headDim; d++)
                        Assert.That(outA[at + d], Is.EqualTo(outB[at + d]).Within(1e-5 * magnitude), $"row {start + i} head {h} dim {d}");
                    Assert.That(startA[h * n + i], Is.EqualTo(startB[h * n + i]).Within(1e-6), $"row {start + i} head {h}: start-token probability");
                }
            start += n;
        }
    }

    /// <summary>One model's cache and attention on two threads.</summary>
    private sealed class Side(TransformerModel model)
    {
        private readonly KvCache _cache = new(model.Config, model.KvLayout, Context, 0);
        private readonly ICausalAttention _attention = InferenceContext.CreateAttention(model, model.KvLayout, new KernelThreads(2));

        public (float[] Output, float[] StartAttention) Feed(int start, int n, float[] keys, float[] values, float[] queries, bool[] masked)
        {
            TransformerConfig c = model.Config;
            int kv = c.KvDim, width = c.NumHeads * c.HeadDim;
            _cache.EnsureSlots(start + n);
            _cache.Append(0, Enumerable.Range(start, n).ToArray(), masked.AsSpan(start, n), n, renumber: false);
            float[] keyRows = keys.AsSpan(start * kv, n * kv).ToArray(), valueRows = values.AsSpan(start * kv, n * kv).ToArray();
            for (int i = 0; i < n; i += 8)
                fixed (float* k = keyRows, v = valueRows) _cache.Storage.Store(0, start + i, k + i * kv, v + i * kv, Math.Min(8, n - i));
            _cache.Storage.FinishLayer(0, start, n, keyRows);
            float[] output = new float[n * width], startAttention = new float[c.NumHeads * n];
            _attention.Attend(_cache, 0, start, n, queries.AsSpan(start * width, n * width), output, startAttention);
            _cache.AddTokens(n);
            return (output, startAttention);
        }
    }
}
