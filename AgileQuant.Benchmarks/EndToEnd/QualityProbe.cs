using AgileQuant.Cli.Bench;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// <c>e2e-quality --probe</c>: on one GGUF file, the KL of our forward pass with each linear run one way or another —
/// our integer kernels as loaded, FP32 on the file's values, llama.cpp's own CPU arithmetic (<see cref="GgmlCpuKernel"/>) for
/// all or some tensor types — beside llama.cpp itself, so that a difference between the engines is traced to the tensors
/// and roundings that make it.
/// </summary>
internal static class QualityProbe
{
    // The weights with every token embedding value multiplied by 1 + 1e-4·u, u uniform in (−1, 1) (seeded)
    private static TransformerWeights WithMovedEmbeddings(TransformerWeights w, int seed)
    {
        var random = new Random(seed);
        float[] table = [.. w.TokenEmbeddingAsFloats().Select(v => v * (1 + 1e-4f * (2 * random.NextSingle() - 1)))];
        return new TransformerWeights { Config = w.Config, TokenEmbedding = table, Layers = w.Layers, FinalNorm = w.FinalNorm, LmHead = w.LmHead };
    }

    /// <summary>
    /// Each configuration's mean KL minus <paramref name="baseline"/>'s with the standard error of that difference over the
    /// documents (paired: the same positions; documents as clusters, so correlated positions within one count once).
    /// </summary>
    public static void PairedDifferences(IReadOnlyDictionary<string, double[]> documentKl, string baseline, int[] positions)
    {
        foreach ((string name, double[] kl) in documentKl)
        {
            (double mean, double error) = PairedDifference(kl, documentKl[baseline], positions);
            Console.Error.WriteLine($"  {name}: KL − {baseline} = {mean:+0.00000;-0.00000} ± {error:0.00000} (1 s.e. over {positions.Length} documents)");
        }
    }

    /// <summary>
    /// Mean KL of <paramref name="candidate"/> minus <paramref name="baseline"/>'s (each Σ KL per document over
    /// <paramref name="positions"/> positions) and its standard error with documents as clusters.
    /// </summary>
    public static (double Mean, double Error) PairedDifference(double[] candidate, double[] baseline, int[] positions)
    {
        int documents = positions.Length;
        double total = positions.Sum();
        double mean = Enumerable.Range(0, documents).Sum(d => candidate[d] - baseline[d]) / total;
        double spread = Enumerable.Range(0, documents).Sum(d => Math.Pow(candidate[d] - baseline[d] - mean * positions[d], 2));
        return (mean, Math.Sqrt(spread * documents / (documents - 1)) / total);
    }

    /// <summary>Scores the configurations of <paramref name="path"/> through <paramref name="score"/> (name, logits of a document).</summary>
    public static void Run(string path, IMatMulKernel kernel, int threads, int context, Action<string, Func<int[], float[][]>> score)
    {
        TransformerModel ours = GgufSchemeLoader.Load(path, "W8A16", kernel);
        score("ours as loaded", d => QualityTable.AllLogits(ours, d));
        GgufFile file = GgufFile.Read(path);
        GgmlType[] types = [.. file.Tensors.Where(t => t.Shape.Count == 2).Select(t => t.Type).Distinct()];
        var ggml = new GgmlCpuKernel(kernel);
        using GgufTensorData data = GgufTensorData.Open(file);
        TransformerModel With(Func<GgmlType, bool> useGgml, Func<GgmlType, bool> dequantize, RuntimeOptions? options = null)
        {
            TransformerWeights weights = GgmlCpuKernel.WithFileValues(ours.Weights, data, t => dequantize(t) && !useGgml(t));
            return new TransformerModel(GgmlCpuKernel.WithFileMatrices(weights, data, useGgml), ggml, options ?? ours.Options);
        }
        TransformerModel fp32 = With(_ => false, _ => true);
        score("FP32 on the file's values (ggml to_float)", d => QualityTable.AllLogits(fp32, d));
        TransformerModel allGgml = With(_ => true, _ => false);
        score("llama.cpp's linears (ggml-cpu vec_dot) everywhere", d => QualityTable.AllLogits(allGgml, d));
        TransformerModel allGgmlF16Kv = With(_ => true, _ => false, ours.Options with { KvCache = KvCacheType.F16 });
        score("llama.cpp's linears everywhere, F16 KV cache", d => QualityTable.AllLogits(allGgmlF16Kv, d));
        // The same arithmetic on token embeddings moved by a relative 1e-4 (seeded): what that costs in FP32 is the control; in
        // ours it also re-draws which activations round up or down, so the spread of these rows is the KL noise of one rounding
        foreach (int seed in new[] { 1, 2, 3 })
        {
            TransformerWeights moved = WithMovedEmbeddings(ours.Weights, seed);
            var movedOurs = new TransformerModel(moved, kernel, ours.Options);
            score($"ours, embeddings moved by 1e-4 (seed {seed})", d => QualityTable.AllLogits(movedOurs, d));
            var movedFp32 = new TransformerModel(WithMovedEmbeddings(fp32.Weights, seed), ggml, ours.Options);
            score($"FP32 on the file's values, embeddings moved by 1e-4 (seed {seed})", d => QualityTable.AllLogits(movedFp32, d));
        }
        foreach (GgmlType type in types)
        {
            TransformerModel only = With(t => t == type, _ => false);
            score($"ours, {type} tensors by ggml vec_dot", d => QualityTable.AllLogits(only, d));
            TransformerModel allBut = With(t => t != type, _ => false);
            score($"ggml vec_dot, {type} tensors ours", d => QualityTable.AllLogits(allBut, d));
        }
        using var engine = new LlamaCppEngine(path, threads, context);
        score("llama.cpp", engine.AllLogits);
    }
}
