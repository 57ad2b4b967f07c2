using System.Text.RegularExpressions;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Cli.Bench;

/// <summary>A LLaMA shape for synthetic benchmark models: a name and the config it stands for.</summary>
/// <param name="Name">e.g. <c>llama7b-4l</c>.</param>
/// <param name="Config">Sizes (random weights: speed depends on shapes, not values).</param>
internal sealed record SyntheticModelShape(string Name, TransformerConfig Config)
{
    /// <summary>Base shapes: LLaMA-7B layers (4 by default), TinyLlama-1.1B, stories110M, and a small one for quick runs.</summary>
    public static IReadOnlyList<string> BaseNames { get; } = ["llama7b", "tinyllama", "stories110m", "small"];

    /// <summary>
    /// Parses <c>base</c> or <c>base-Nl</c> (N layers): <c>llama7b</c> (dim 4096, ffn 11008, 32 heads, vocab 32000, 4 layers
    /// unless given), <c>tinyllama</c> (2048, 5632, 32 heads / 4 kv heads, 22 layers), <c>stories110m</c> (768, 2048, 12 heads,
    /// 12 layers), <c>small</c> (512, 1376, 8 heads, 4 layers, vocab 4096).
    /// </summary>
    /// <exception cref="AgileQuantException">Unknown base name or a layer count outside 1..1024.</exception>
    public static SyntheticModelShape Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Match m = Regex.Match(name.Trim().ToLowerInvariant(), @"^([a-z0-9]+?)(?:-(\d{1,4})l)?$");
        string baseName = m.Success ? m.Groups[1].Value : name;
        (int dim, int ffn, int heads, int kvHeads, int layers, int vocab, int context) = baseName switch
        {
            "llama7b" => (4096, 11008, 32, 32, 4, 32000, 2048),
            "tinyllama" => (2048, 5632, 32, 4, 22, 32000, 2048),
            "stories110m" => (768, 2048, 12, 12, 12, 32000, 1024),
            "small" => (512, 1376, 8, 8, 4, 4096, 1024),
            _ => throw new AgileQuantException($"unknown model shape \"{name}\"; expected one of {string.Join(", ", BaseNames)}, optionally with -<layers>l (e.g. llama7b-4l)"),
        };
        if (m.Groups[2].Success)
        {
            layers = int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            if (layers is < 1 or > 1024) throw new AgileQuantException($"layer count must be in 1..1024, found {layers}");
        }
        var config = new TransformerConfig
        {
            Family = "llama", VocabSize = vocab, HiddenSize = dim, IntermediateSize = ffn, NumLayers = layers, NumHeads = heads,
            NumKvHeads = kvHeads, MaxSequenceLength = context, Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f,
            Positions = PositionKind.Rotary, RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
        };
        return new SyntheticModelShape($"{baseName}-{layers}l", config);
    }
}

/// <summary>
/// Writes seeded random LLaMA models straight to GGUF, row by row (a 4-layer LLaMA-7B-shaped F32 file is 4.3 GB and
/// never sits in memory): weight (t, r, c) = U(−a, a), a = 1/√(fan-in), from a SplitMix64 stream keyed by
/// (seed, tensor index, row), so every file type of one seed holds the same values before rounding; norms are 1.
/// </summary>
internal static class SyntheticGgufModel
{
    /// <summary>
    /// Writes <paramref name="shape"/> with matrices and token embedding in <paramref name="type"/> to <paramref name="path"/>;
    /// the vocabulary is <paramref name="vocabulary"/> (default: placeholder pieces), and <paramref name="metadata"/> adds keys
    /// (e.g. <c>tokenizer.chat_template</c>).
    /// </summary>
    public static void Write(string path, SyntheticModelShape shape, GgmlType type, ulong seed = 7, GgufVocabulary? vocabulary = null, Action<GgufWriter>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(shape);
        TransformerConfig c = shape.Config;
        var w = new GgufWriter();
        GgufModelWriter.AddModelMetadata(w, c, vocabulary ?? GgufVocabulary.Placeholder(c.VocabSize), type, "synthetic-" + shape.Name);
        metadata?.Invoke(w);
        TensorNameMap names = ArchitectureRegistry.ForFamily(c.Family).GgufNames!;
        int d = c.HiddenSize, tensorIndex = 0;
        float[] ones = Enumerable.Repeat(1f, d).ToArray();
        void Matrix(string name, int rows, int cols)
        {
            ulong key = seed * 0x9E3779B97F4A7C15UL ^ (ulong)++tensorIndex << 40;
            float amplitude = 1f / MathF.Sqrt(cols);
            GgufModelWriter.AddMatrix(w, name + ".weight", rows, cols, type, (r, row) => Fill(key ^ (ulong)r, amplitude, row));
        }
        Matrix(names.Global(ModelTensor.TokenEmbedding)!, c.VocabSize, d);
        for (int i = 0; i < c.NumLayers; i++)
            foreach (LayerTensor role in LayerTensors.All.Where(r => r.IsRequiredBy(c)))
            {
                if (role.IsNorm()) GgufModelWriter.AddVector(w, names.Layer(i, role) + ".weight", role.NormWidth(c) == d ? ones : Enumerable.Repeat(1f, role.NormWidth(c)).ToArray());
                else Matrix(names.Layer(i, role)!, role.Shape(c).Rows, role.Shape(c).Cols);
            }
        GgufModelWriter.AddVector(w, names.Global(ModelTensor.FinalNorm) + ".weight", ones);
        Matrix(names.Global(ModelTensor.LmHead)!, c.VocabSize, d);
        w.Write(path);
    }

    // row[i] = a · (2u − 1), u uniform in [0, 1) from SplitMix64 (Steele, Lea, Flood 2014) seeded with `state`.
    private static void Fill(ulong state, float amplitude, Span<float> row)
    {
        for (int i = 0; i < row.Length; i++)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            row[i] = amplitude * ((z >> 40) * (2f / (1 << 24)) - 1f);
        }
    }
}
