using System.Diagnostics;
using System.Globalization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Benchmarks.Kernels;

/// <summary>
/// <c>kv-attention</c>: the attention of one layer reading a KV cache filled to a depth, per KV cache type, in this process:
/// the types alternate round by round (each round times every type's calls back to back), and each type's median time per
/// call is printed with its ratio to the first type's. The caches hold the same random keys and values; a call attends
/// <c>--rows</c> new rows (1: one decode step) at the end of the cache, as <c>AgileQuant.Core</c>'s forward pass does in each
/// layer. Shape: llama7b's heads by default (32 heads of 128, 32 key/value heads); docs/benchmarks.md, "KV cache types".
/// </summary>
internal static unsafe class KvAttentionAtDepth
{
    /// <summary>Runs with options <c>--depth N --rows N --rounds N --calls N --threads N --heads N --kv-heads N --head-dim N --kv-types q8,q4,f16</c>.</summary>
    public static void Run(string[] args)
    {
        int depth = Option(args, "--depth", 3500), rows = Option(args, "--rows", 1), rounds = Option(args, "--rounds", 15), calls = Option(args, "--calls", 20);
        int threads = Option(args, "--threads", 2), heads = Option(args, "--heads", 32), kvHeads = Option(args, "--kv-heads", 32), headDim = Option(args, "--head-dim", 128);
        string typesOption = args.SkipWhile(a => a != "--kv-types").Skip(1).FirstOrDefault() ?? "q8,q4,f16";
        KvCacheType[] types = typesOption.Split(',').Select(t => Enum.Parse<KvCacheType>(t, ignoreCase: true)).ToArray();
        TransformerWeights weights = Weights(heads, kvHeads, headDim, depth + rows);
        TransformerConfig c = weights.Config;
        var random = new Random(27);
        float[] keys = Gaussian(random, (depth + rows) * c.KvDim), values = Gaussian(random, (depth + rows) * c.KvDim);
        float[] queries = Gaussian(random, rows * heads * headDim);
        var kernelThreads = new KernelThreads(threads);
        var sides = types.Select(t => new Side(new TransformerModel(weights, KernelSelector.Create(), new RuntimeOptions { KvCache = t }), kernelThreads, depth, rows, keys, values)).ToArray();
        var times = types.Select(_ => new List<double>()).ToArray();
        float[] output = new float[rows * heads * headDim];
        for (int round = -1; round < rounds; round++) // round −1 warms up
            for (int i = 0; i < sides.Length; i++)
            {
                var watch = Stopwatch.StartNew();
                for (int call = 0; call < calls; call++) sides[i].Attend(queries, output);
                if (round >= 0) times[i].Add(watch.Elapsed.TotalMilliseconds / calls);
            }
        Console.WriteLine($"kv-attention: depth {depth}, {rows} row(s) per call, {heads} heads / {kvHeads} kv of {headDim}, {threads} threads; median of {rounds} rounds × {calls} calls; load {File.ReadAllText("/proc/loadavg").Trim()}");
        double first = Median(times[0]);
        for (int i = 0; i < types.Length; i++)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{types[i],-4} {Median(times[i]),9:F3} ms/call  {Median(times[i]) / first,6:F3}× {types[0]}  (min {times[i].Min():F3}, max {times[i].Max():F3})"));
    }

    /// <summary>One type's cache, filled to the depth plus the call's rows, and its attention.</summary>
    private sealed class Side
    {
        private readonly KvCache _cache;
        private readonly ICausalAttention _attention;
        private readonly int _depth, _rows;

        public Side(TransformerModel model, KernelThreads threads, int depth, int rows, float[] keys, float[] values)
        {
            (_depth, _rows) = (depth, rows);
            TransformerConfig c = model.Config;
            int slots = depth + rows, kv = c.KvDim;
            _cache = new KvCache(c, model.KvLayout, slots, 0);
            _cache.EnsureSlots(slots);
            _cache.Append(0, Enumerable.Range(0, slots).ToArray(), new bool[slots], slots, renumber: false);
            fixed (float* k = keys, v = values)
                for (int i = 0; i < slots; i += 64) _cache.Storage.Store(0, i, k + (long)i * kv, v + (long)i * kv, Math.Min(64, slots - i));
            _cache.Storage.FinishLayer(0, 0, slots, keys);
            _cache.AddTokens(slots);
            _attention = InferenceContext.CreateAttention(model, model.KvLayout, threads);
        }

        public void Attend(float[] queries, float[] output) => _attention.Attend(_cache, 0, _depth, _rows, queries, output, []);
    }

    // one layer of the given heads (the attention reads only its config); hidden size 64 keeps the projections small
    private static TransformerWeights Weights(int heads, int kvHeads, int headDim, int context)
    {
        TransformerConfig c = EndToEnd.SyntheticLlama.Config(dim: 64, layers: 1, heads: heads, kvHeads: kvHeads, hidden: 64, vocab: 64, context: context) with { HeadSize = headDim };
        LinearLayer Linear(int rows, int cols) => new(new Fp32Matrix(new float[rows * cols], rows, cols));
        NormLayer Norm() => new(NormKind.RmsNorm, Enumerable.Repeat(1f, c.HiddenSize).ToArray(), null, c.NormEpsilon);
        int d = c.HiddenSize, q = heads * headDim;
        var layer = new LayerWeights
        {
            AttentionNorm = Norm(),
            Query = Linear(q, d),
            Key = Linear(c.KvDim, d),
            Value = Linear(c.KvDim, d),
            Output = Linear(d, q),
            MlpNorm = Norm(),
            Gate = Linear(c.IntermediateSize, d),
            Up = Linear(c.IntermediateSize, d),
            Down = Linear(d, c.IntermediateSize),
        };
        float[] embedding = new float[c.VocabSize * d];
        return new TransformerWeights { Config = c, TokenEmbedding = embedding, Layers = [layer], FinalNorm = Norm(), LmHead = new LinearLayer(new Fp32Matrix(embedding, c.VocabSize, d)) };
    }

    private static float[] Gaussian(Random random, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return x;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static double Median(List<double> x)
    {
        double[] sorted = [.. x.Order()];
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
