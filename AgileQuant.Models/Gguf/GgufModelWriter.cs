using System.Runtime.InteropServices;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;

namespace AgileQuant.Models.Gguf;

/// <summary>Options for <see cref="GgufModelWriter.Write(string, TransformerWeights, GgufVocabulary, GgufWriteOptions?)"/>.</summary>
public sealed record GgufWriteOptions
{
    /// <summary>
    /// Type of the weight matrices and the token embedding: F32, F16, Q8_0 or Q4_0 (norms stay F32; a matrix whose
    /// rows are not a multiple of 32 is written F16 under Q8_0/Q4_0, as llama-quantize falls back).
    /// </summary>
    public GgmlType WeightType { get; init; } = GgmlType.F32;

    /// <summary>Type of <c>token_embd.weight</c>; null: <see cref="WeightType"/>.</summary>
    public GgmlType? EmbeddingType { get; init; }

    /// <summary>Type of <c>output.weight</c> (the LM head); null: <see cref="WeightType"/>.</summary>
    public GgmlType? OutputType { get; init; }

    /// <summary><c>general.name</c>.</summary>
    public string Name { get; init; } = "agilequant-export";
}

/// <summary>
/// Writes a model of any family with a GGUF form (<see cref="ArchitectureDescription.GgufArchitecture"/>) as a GGUF v3 file
/// llama.cpp loads: the family's <c>{arch}.*</c> hyper-parameters, a <c>tokenizer.ggml.*</c> SentencePiece vocabulary,
/// and the tensors under the family's GGUF names.
/// </summary>
/// <remarks>
/// Q/K rows (and biases) whose <see cref="RotaryPairing"/> differs from the family's GGUF layout are permuted to it
/// (llama.cpp convert_hf_to_gguf.py <c>LlamaModel.permute</c>: for LLaMA, Hugging Face's rotate-half row
/// <c>h·hd + j·hd/2 + i</c> becomes GGUF row <c>h·hd + 2i + j</c>); linears the family stores fused are joined.
/// Exact mappings: <see cref="PackedInt4Matrix"/> symmetric (any group size) → Q4_0 and <see cref="Int8RowMatrix"/> → Q8_0
/// keep every code, only scales round to fp16; every other source/target pair dequantizes a row and quantizes it with
/// ggml's reference quantizer (<see cref="GgmlBlockCodec"/>).
/// </remarks>
public static class GgufModelWriter
{
    private const string Weight = ".weight", Bias = ".bias";

    /// <summary>Writes <paramref name="weights"/> with <paramref name="vocabulary"/> to <paramref name="path"/>.</summary>
    /// <exception cref="AgileQuantException">The model's family has no GGUF form, the model is not shaped as its family's GGUF files
    /// are (norm, positions, MLP, pre-norm, biases), or the vocabulary size differs.</exception>
    public static void Write(string path, TransformerWeights weights, GgufVocabulary vocabulary, GgufWriteOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (!ArchitectureRegistry.TryForFamily(weights.Config.Family, out ArchitectureDescription? family)) throw NoGgufForm(weights.Config.Family);
        Write(path, weights, family, vocabulary, options);
    }

    /// <summary>Writes <paramref name="weights"/> as a model of <paramref name="family"/>.</summary>
    internal static void Write(string path, TransformerWeights weights, ArchitectureDescription family, GgufVocabulary vocabulary, GgufWriteOptions? options)
    {
        options ??= new GgufWriteOptions();
        TransformerConfig c = weights.Config;
        weights.Validate();
        RequireGgufForm(family, weights);
        if (vocabulary.Tokens.Count != c.VocabSize || vocabulary.Scores.Count != c.VocabSize || vocabulary.TokenTypes.Count != c.VocabSize)
            throw new AgileQuantException($"GGUF export needs one token per embedding row: expected {c.VocabSize} tokens, scores and types, found {vocabulary.Tokens.Count}, {vocabulary.Scores.Count} and {vocabulary.TokenTypes.Count}.");
        GgmlType type = options.WeightType, embeddingType = options.EmbeddingType ?? type, outputType = options.OutputType ?? type;
        foreach (GgmlType t in new[] { type, embeddingType, outputType })
            if (t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0 or GgmlType.Q4_0))
                throw new AgileQuantException($"GGUF export writes F32, F16, Q8_0 or Q4_0 weights, found {t}.");

        var w = new GgufWriter();
        AddModelMetadata(w, family, c, vocabulary, type, options.Name);
        TensorNameMap names = family.GgufNames!;
        string Global(ModelTensor tensor) => names.Global(tensor)!;
        var embedding = new Fp32Matrix(weights.TokenEmbedding, c.VocabSize, c.HiddenSize);
        AddMatrix(w, Global(ModelTensor.TokenEmbedding) + Weight, embedding, embeddingType, null);
        if (weights.PositionEmbedding is { } positions)
            AddMatrix(w, Global(ModelTensor.PositionEmbedding) + Weight, new Fp32Matrix(positions, positions.Length / c.HiddenSize, c.HiddenSize), GgmlType.F32, null);
        if (weights.EmbeddingNorm is { } embeddingNorm) AddNorm(w, Global(ModelTensor.EmbeddingNorm), embeddingNorm);
        if (c.RotaryFrequencyFactors is { } factors) AddVector(w, Global(ModelTensor.RotaryFrequencies) + Weight, [.. factors.Factors]);
        for (int i = 0; i < c.NumLayers; i++)
        {
            LayerWeights l = weights.Layers[i];
            foreach (LayerTensor role in LayerTensors.All)
            {
                if (role.IsNorm())
                {
                    // per-head q/k norm weights follow their head's rows when those are permuted
                    if (l.Norm(role) is { } norm) AddNorm(w, names.Layer(i, role)!, norm, PairingPermutation(role, c, family.GgufRotaryPairing));
                    continue;
                }
                if (l.Linear(role) is not { } linear) continue;
                if (names.FusedWith(role) is { } fused)
                {
                    if (role == fused.Parts[0]) AddFused(w, names.InLayer(i, fused.Name), fused, l, c, family.GgufRotaryPairing, type);
                    continue;
                }
                Func<int, int>? sourceRow = PairingPermutation(role, c, family.GgufRotaryPairing);
                AddMatrix(w, names.Layer(i, role)! + Weight, linear.Weight, type, sourceRow);
                if (linear.Bias is { } bias) AddVector(w, names.Layer(i, role)! + Bias, Permuted(bias, sourceRow));
            }
        }
        AddNorm(w, Global(ModelTensor.FinalNorm), weights.FinalNorm!);
        bool tied = weights.LmHead.Weight is Fp32Matrix head && ReferenceEquals(head.Data, weights.TokenEmbedding);
        if (!tied) AddMatrix(w, Global(ModelTensor.LmHead) + Weight, weights.LmHead.Weight, outputType, null);
        w.Write(path);
    }

    /// <summary>The <c>general.*</c>, <c>{arch}.*</c> and <c>tokenizer.ggml.*</c> keys of a model of <paramref name="c"/> whose matrices are <paramref name="type"/>.</summary>
    /// <exception cref="AgileQuantException">The model's family has no GGUF form.</exception>
    public static void AddModelMetadata(GgufWriter w, TransformerConfig c, GgufVocabulary vocabulary, GgmlType type, string name) =>
        AddModelMetadata(w, ArchitectureRegistry.ForFamily(c.Family), c, vocabulary, type, name);

    private static void AddModelMetadata(GgufWriter w, ArchitectureDescription family, TransformerConfig c, GgufVocabulary vocabulary, GgmlType type, string name)
    {
        string a = family.GgufKeyPrefix ?? throw NoGgufForm(c.Family);
        bool rotary = c.Positions == PositionKind.Rotary;
        w.AddString("general.architecture", family.GgufArchitecture!);
        w.AddString("general.name", name);
        w.AddUInt32("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q4_0 => 2u, _ => 7u });
        w.AddUInt32("general.quantization_version", 2);
        w.AddUInt32(a + "vocab_size", (uint)c.VocabSize);
        w.AddUInt32(a + "context_length", (uint)c.MaxSequenceLength);
        w.AddUInt32(a + "embedding_length", (uint)c.HiddenSize);
        w.AddUInt32(a + "block_count", (uint)c.NumLayers);
        w.AddUInt32(a + "feed_forward_length", (uint)c.IntermediateSize);
        if (rotary) w.AddUInt32(a + "rope.dimension_count", (uint)c.HeadDim);
        w.AddUInt32(a + "attention.head_count", (uint)c.NumHeads);
        w.AddUInt32(a + "attention.head_count_kv", (uint)c.NumKvHeads);
        if (c.HeadDim * c.NumHeads != c.HiddenSize)
        {
            w.AddUInt32(a + "attention.key_length", (uint)c.HeadDim);
            w.AddUInt32(a + "attention.value_length", (uint)c.HeadDim);
        }
        w.AddFloat32(a + GgufModelReader.NormEpsilonKey(c.Norm), c.NormEpsilon);
        if (rotary) w.AddFloat32(a + "rope.freq_base", c.RotaryTheta);
        if (rotary && c.RotaryScalingFactor != 1f)
        {
            w.AddString(a + "rope.scaling.type", "linear");
            w.AddFloat32(a + "rope.scaling.factor", c.RotaryScalingFactor);
        }
        family.WriteGgufConfig(w, c);
        w.AddString("tokenizer.ggml.model", "llama");
        w.AddArray("tokenizer.ggml.tokens", vocabulary.Tokens);
        w.AddArray("tokenizer.ggml.scores", vocabulary.Scores);
        w.AddArray("tokenizer.ggml.token_type", vocabulary.TokenTypes);
        w.AddUInt32("tokenizer.ggml.bos_token_id", (uint)vocabulary.BosId);
        w.AddUInt32("tokenizer.ggml.eos_token_id", (uint)vocabulary.EosId);
        w.AddUInt32("tokenizer.ggml.unknown_token_id", (uint)vocabulary.UnknownId);
        w.AddBool("tokenizer.ggml.add_bos_token", true);
        w.AddBool("tokenizer.ggml.add_eos_token", false);

    }

    /// <summary>
    /// Source row of GGUF row r of Q or K (or element r of a per-head Q/K norm weight) when the model's <see cref="RotaryPairing"/>
    /// differs from <paramref name="target"/>, else null. Within a head of hd rows, rotate-half row j·hd/2 + i pairs with
    /// adjacent row 2i + j (i &lt; hd/2, j ∈ {0, 1}).
    /// </summary>
    private static Func<int, int>? PairingPermutation(LayerTensor role, TransformerConfig c, RotaryPairing target)
    {
        if (role is not (LayerTensor.Query or LayerTensor.Key or LayerTensor.QueryNorm or LayerTensor.KeyNorm)
            || c.Positions != PositionKind.Rotary || c.RotaryPairing == target) return null;
        int hd = c.HeadDim, half = hd / 2;
        return target == RotaryPairing.Adjacent
            ? r => r / hd * hd + (r % hd & 1) * half + r % hd / 2
            : r => r / hd * hd + r % hd % half * 2 + r % hd / half;
    }

    private static float[] Permuted(float[] values, Func<int, int>? sourceRow) =>
        sourceRow is null ? values : Enumerable.Range(0, values.Length).Select(r => values[sourceRow(r)]).ToArray();

    // The fused tensor `name` of layer l: its parts' rows (each permuted as it would be alone) in the fused layout.
    private static void AddFused(GgufWriter w, string name, FusedTensor fused, LayerWeights l, TransformerConfig c, RotaryPairing target, GgmlType type)
    {
        LinearLayer[] parts = fused.Parts.Select(p => l.Linear(p)!).ToArray();
        Func<int, int>?[] permutations = fused.Parts.Select(p => PairingPermutation(p, c, target)).ToArray();
        int[] partRows = parts.Select(p => p.OutFeatures).ToArray();
        int rows = partRows.Sum(), cols = parts[0].InFeatures;
        (LinearLayer Part, int Row) Source(int r)
        {
            (int part, int row) = fused.Locate(r, partRows, c.HeadDim);
            return (parts[part], permutations[part]?.Invoke(row) ?? row);
        }
        AddMatrix(w, name + Weight, rows, cols, type, r =>
        {
            (LinearLayer part, int row) = Source(r);
            return (part.Weight, row);
        });
        if (parts[0].Bias is null) return;
        var bias = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            (LinearLayer part, int row) = Source(r);
            bias[r] = part.Bias![row];
        }
        AddVector(w, name + Bias, bias);
    }

    private static void AddNorm(GgufWriter w, string name, NormLayer norm, Func<int, int>? sourceElement = null)
    {
        AddVector(w, name + Weight, Permuted(norm.Weight, sourceElement));
        if (norm.Bias is not null) AddVector(w, name + Bias, Permuted(norm.Bias, sourceElement));
    }

    private static AgileQuantException NoGgufForm(string family) =>
        new($"GGUF export writes the families llama.cpp runs ({string.Join(", ", ArchitectureRegistry.All.Where(a => a.GgufArchitecture is not null).Select(a => a.Family))}), found a '{family}' model.");

    // Checks that the weights have the shape the family's GGUF files have (what the reader rebuilds).
    private static void RequireGgufForm(ArchitectureDescription family, TransformerWeights weights)
    {
        TransformerConfig c = weights.Config;
        if (family.GgufNames is null) throw NoGgufForm(c.Family);
        string? problem =
            c.Norm != family.Norm ? $"{family.Norm} norms, found {c.Norm}"
            : c.Positions != family.Positions ? $"{family.Positions} positions, found {c.Positions}"
            : c.Mlp != family.Mlp ? $"a {family.Mlp} MLP, found {c.Mlp}"
            : !c.PreNorm || !c.FinalNorm ? "pre-norm blocks and a final norm, found a post-norm model or one without a final norm"
            : c.EmbeddingNorm != family.EmbeddingNorm ? (family.EmbeddingNorm ? "an embedding norm, found none" : "no embedding norm, found one")
            : c.QueryKeyNorm != family.QueryKeyNorm ? (family.QueryKeyNorm ? "per-head query/key norms, found none" : "no per-head query/key norms, found them")
            : c.PostNorms != family.PostNorms ? (family.PostNorms ? "post-attention and post-MLP norms, found none" : "no post-norms, found them")
            : (ConfigFeatureSet.Of(c) & ~family.GgufFeatures) is var unstated and not ConfigFeatures.None
                ? $"only what its GGUF files state, found {unstated} (its GGUF files have no key for it)"
            : c.EmbeddingWidth != c.HiddenSize || weights.ProjectIn is not null || weights.ProjectOut is not null ? "no embedding projections, found project_in/project_out"
            : family.Head == HeadTying.Tied && !(weights.LmHead.Weight is Fp32Matrix head && ReferenceEquals(head.Data, weights.TokenEmbedding))
                ? "its head tied to the token embedding, found a separate one"
            : c.Norm == NormKind.RmsNorm && NormBiases(weights) ? "RMS norms without biases, found a norm bias"
            : BiasProblem(family, weights);
        if (problem is not null) throw new AgileQuantException($"GGUF export of a '{c.Family}' model needs {problem}.");
    }

    private static bool NormBiases(TransformerWeights weights) =>
        weights.EmbeddingNorm?.Bias is not null || weights.FinalNorm?.Bias is not null
        || weights.Layers.Any(l => LayerTensors.Norms.Any(role => l.Norm(role)?.Bias is not null));

    // A bias the family does not have, or optional biases on some linears and not others.
    private static string? BiasProblem(ArchitectureDescription family, TransformerWeights weights)
    {
        bool? optional = null;
        foreach (LayerWeights l in weights.Layers)
            foreach ((LayerTensor role, LinearLayer linear) in l.Linears)
            {
                bool has = linear.Bias is not null;
                switch (family.Bias(role))
                {
                    case BiasRule.None when has: return $"no bias on the {role.Describe()} projection, found one";
                    case BiasRule.Always when !has: return $"a bias on every {role.Describe()} projection, found none";
                    case BiasRule.Optional when (optional ??= has) != has: return "biases on all of its optional-bias projections or on none, found some";
                }
            }
        return null;
    }

    /// <summary>Adds <paramref name="values"/> as an F32 vector named <paramref name="name"/> (a norm's weight or a bias).</summary>
    public static void AddVector(GgufWriter w, string name, float[] values) =>
        w.AddTensor(name, [values.Length], GgmlType.F32, stream => stream.Write(MemoryMarshal.AsBytes(values.AsSpan())));

    private static void AddMatrix(GgufWriter w, string name, IWeightMatrix matrix, GgmlType type, Func<int, int>? sourceRow) =>
        AddMatrix(w, name, matrix.Rows, matrix.Cols, type, r => (matrix, sourceRow?.Invoke(r) ?? r));

    // GGUF row r is row `Row` of `Matrix` (a permuted row, or a part of a fused tensor).
    private static void AddMatrix(GgufWriter w, string name, int rows, int cols, GgmlType type, Func<int, (IWeightMatrix Matrix, int Row)> source) =>
        AddMatrix(w, name, rows, cols, type,
            (r, row) => { (IWeightMatrix m, int sr) = source(r); DequantizeRow(m, sr, row); },
            (r, t, bytes) =>
            {
                (IWeightMatrix m, int sr) = source(r);
                return t == GgmlType.Q8_0 && TryCopyInt8Row(m, sr, bytes) || t == GgmlType.Q4_0 && TryCopyInt4Row(m, sr, bytes);
            });

    /// <summary>
    /// Adds a (rows, cols) matrix row by row, so it never sits in memory whole: <paramref name="row"/> fills row r in FP32,
    /// which is encoded as <paramref name="type"/> (F32, F16, Q8_0 or Q4_0; F16 when a Q8_0/Q4_0 row is not whole 32-blocks;
    /// any other type makes <see cref="GgufWriter.Write(string)"/> throw <see cref="AgileQuantException"/>).
    /// </summary>
    public static void AddMatrix(GgufWriter w, string name, int rows, int cols, GgmlType type, Action<int, Span<float>> row) =>
        AddMatrix(w, name, rows, cols, type, row, null);

    /// <summary>
    /// Adds a (rows, cols) matrix whose row r <paramref name="row"/> produces in FP32, encoded as <paramref name="type"/>
    /// (F16 when a Q8_0/Q4_0 row is not whole 32-blocks); <paramref name="exact"/>, when given, may encode a row itself.
    /// </summary>
    internal static void AddMatrix(GgufWriter w, string name, int rows, int cols, GgmlType type, Action<int, Span<float>> row,
        Func<int, GgmlType, Span<byte>, bool>? exact)
    {
        // Like llama-quantize, a row that is not whole 32-blocks falls back to F16 (e.g. ffn_down of a 172-wide MLP).
        if (type is GgmlType.Q8_0 or GgmlType.Q4_0 && cols % BlockQ8_0.Elements != 0) type = GgmlType.F16;
        w.AddTensor(name, [cols, rows], type, stream =>
        {
            int rowBytes = (int)GgmlTypeTraits.Find(type)!.RowBytes(cols);
            var values = new float[cols];    // (cols) FP32 source row
            var bytes = new byte[rowBytes];  // one GGUF row
            for (int r = 0; r < rows; r++)
            {
                if (exact?.Invoke(r, type, bytes) != true)
                {
                    row(r, values);
                    EncodeRow(values, type, bytes);
                }
                stream.Write(bytes);
            }
        });
    }

    private static void EncodeRow(ReadOnlySpan<float> row, GgmlType type, Span<byte> bytes)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(row).CopyTo(bytes); break;
            case GgmlType.F16: System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(row, MemoryMarshal.Cast<byte, Half>(bytes)); break;
            case GgmlType.Q8_0: GgmlBlockCodec.QuantizeRowQ8_0(row, MemoryMarshal.Cast<byte, BlockQ8_0>(bytes)); break;
            case GgmlType.Q4_0: GgmlBlockCodec.QuantizeRowQ4_0(row, MemoryMarshal.Cast<byte, BlockQ4_0>(bytes)); break;
            default: throw new AgileQuantException($"GGUF export does not encode {type} rows.");
        }
    }

    // w[c] of row r in any of our formats.
    private static void DequantizeRow(IWeightMatrix matrix, int r, Span<float> row)
    {
        switch (matrix)
        {
            case Fp32Matrix fp32: fp32.Row(r).CopyTo(row); break;
            case Int8RowMatrix int8:
                float scale = int8.Scales[r];
                // Code(r, c), not the Codes view: that view is rebuilt for the whole matrix on every read on AVX2 machines
                for (int c = 0; c < row.Length; c++) row[c] = scale * int8.Code(r, c);
                break;
            case PackedInt4Matrix int4:
                for (int c = 0; c < row.Length; c++) row[c] = int4.Dequantize(r, c);
                break;
            default: throw new AgileQuantException($"GGUF export does not know the weight format {matrix.GetType().Name}.");
        }
    }

    // Int8RowMatrix row → Q8_0 blocks that all carry the row scale: codes kept exactly.
    private static bool TryCopyInt8Row(IWeightMatrix matrix, int r, Span<byte> bytes)
    {
        if (matrix is not Int8RowMatrix int8 || !Half.IsFinite((Half)int8.Scales[r])) return false;
        Span<BlockQ8_0> blocks = MemoryMarshal.Cast<byte, BlockQ8_0>(bytes);
        for (int b = 0; b < blocks.Length; b++)
        {
            blocks[b].Scale = (Half)int8.Scales[r];
            Span<byte> qs = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(2);
            for (int j = 0; j < BlockQ8_0.Elements; j++) qs[j] = (byte)(sbyte)int8.Code(r, b * BlockQ8_0.Elements + j);
        }
        return true;
    }

    // Symmetric PackedInt4Matrix row → Q4_0 blocks: nibble q (= code + 8) kept, block b takes group (32b / G)'s scale.
    private static bool TryCopyInt4Row(IWeightMatrix matrix, int r, Span<byte> bytes)
    {
        if (matrix is not PackedInt4Matrix { IsSymmetric: true } int4) return false;
        Span<BlockQ4_0> blocks = MemoryMarshal.Cast<byte, BlockQ4_0>(bytes);
        for (int b = 0; b < blocks.Length; b++)
        {
            blocks[b].Scale = (Half)int4.Scale(r, b * BlockQ4_0.Elements / int4.GroupSize);
            Span<byte> qs = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(2);
            for (int j = 0; j < BlockQ4_0.Elements / 2; j++)
                qs[j] = (byte)(int4.Nibble(r, b * BlockQ4_0.Elements + j) | int4.Nibble(r, b * BlockQ4_0.Elements + j + 16) << 4);
        }
        return true;
    }
}
