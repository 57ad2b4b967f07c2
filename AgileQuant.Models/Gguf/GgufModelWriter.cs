using System.Runtime.InteropServices;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.ChatClient;

namespace AgileQuant.Models.Gguf;

/// <summary>Options for <see cref="GgufModelWriter.Write(string, TransformerWeights, GgufVocabulary, GgufWriteOptions?)"/>.</summary>
public sealed record GgufWriteOptions
{
    /// <summary>
    /// Type of the weight matrices and the token embedding: F32, F16, Q8_0, Q4_0, Q4_K or Q6_K (norms stay F32). A matrix
    /// whose rows the type's blocks do not divide falls back as llama-quantize does: Q4_K to Q5_0 and Q6_K to Q8_0 for rows
    /// that are not a multiple of 256, then to F16 for rows that are not a multiple of 32.
    /// </summary>
    public GgmlType WeightType { get; init; } = GgmlType.F32;

    /// <summary>Type of <c>token_embd.weight</c>; null: <see cref="WeightType"/>.</summary>
    public GgmlType? EmbeddingType { get; init; }

    /// <summary>Type of <c>output.weight</c> (the LM head); null: <see cref="WeightType"/>.</summary>
    public GgmlType? OutputType { get; init; }

    /// <summary><c>general.name</c>.</summary>
    public string Name { get; init; } = "agilequant-export";

    /// <summary>The model's chat template (Jinja text), written as <c>tokenizer.chat_template</c>; null: none.</summary>
    public string? ChatTemplate { get; init; }
}

/// <summary>
/// Writes a model of any family with a GGUF form (<see cref="ArchitectureDescription.GgufArchitecture"/>) as a GGUF v3 file
/// llama.cpp loads: the family's <c>{arch}.*</c> hyper-parameters, a <c>tokenizer.ggml.*</c> vocabulary (SentencePiece or byte-level BPE, <see cref="GgufVocabulary"/>),
/// and the tensors under the family's GGUF names.
/// </summary>
/// <remarks>
/// Q/K rows (and biases) whose <see cref="RotaryPairing"/> differs from the family's GGUF layout are permuted to it
/// (llama.cpp convert_hf_to_gguf.py <c>LlamaModel.permute</c>: for LLaMA, Hugging Face's rotate-half row
/// <c>h·hd + j·hd/2 + i</c> becomes GGUF row <c>h·hd + 2i + j</c>); linears the family stores fused are joined.
/// Exact mappings: <see cref="PackedInt4Matrix"/> symmetric (any group size) → Q4_0 and <see cref="Int8RowMatrix"/> → Q8_0
/// keep every code, only scales round to fp16; a <see cref="GroupedInt8Matrix"/> read from Q8_0 or Q6_K is written back to
/// its type block for block. Every other source/target pair dequantizes a row and quantizes it with ggml's reference
/// quantizer (<see cref="GgmlBlockCodec"/>: Q8_0, Q4_0, Q4_K, Q6_K and the Q5_0 fallback).
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
        if (weights.Layers.Any(l => l.Linears.Any(e => e.Linear.HadamardInput)))
            throw new AgileQuantException("A rotated model (online Hadamard transforms before o_proj and down_proj) cannot be written as GGUF: llama.cpp would not apply the transform.");
        RequireGgufForm(family, weights);
        vocabulary.Validate(c.VocabSize);
        GgmlType type = options.WeightType, embeddingType = options.EmbeddingType ?? type, outputType = options.OutputType ?? type;
        foreach (GgmlType t in new[] { type, embeddingType, outputType })
            if (t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K))
                throw new AgileQuantException($"GGUF export writes F32, F16, Q8_0, Q4_0, Q4_K or Q6_K weights, found {t}.");

        var w = new GgufWriter();
        AddModelMetadata(w, family, c, vocabulary, type, options.Name);
        if (options.ChatTemplate is { } template) w.AddString(ModelChatTemplate.GgufKey, template);
        TensorNameMap names = family.GgufNames!;
        string Global(ModelTensor tensor) => names.Global(tensor)!;
        var embedding = new Fp32Matrix(weights.TokenEmbeddingAsFloats(), c.VocabSize, c.HiddenSize);
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
        // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_Q4_K_S (mostly Q4_K), MOSTLY_Q6_K
        w.AddUInt32("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q4_0 => 2u, GgmlType.Q4_K => 14u, GgmlType.Q6_K => 18u, _ => 7u });
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
        vocabulary.AddTo(w);
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
                return t == GgmlType.Q8_0 && (TryCopyInt8Row(m, sr, bytes) || TryCopyGroupedRowQ8_0(m, sr, bytes))
                    || t == GgmlType.Q4_0 && TryCopyInt4Row(m, sr, bytes)
                    || t == GgmlType.Q6_K && TryCopyGroupedRowQ6_K(m, sr, bytes);
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
    /// (or its fallback where the type's blocks do not divide the rows, <see cref="FallbackType"/>); <paramref name="exact"/>,
    /// when given, may encode a row itself.
    /// </summary>
    internal static void AddMatrix(GgufWriter w, string name, int rows, int cols, GgmlType type, Action<int, Span<float>> row,
        Func<int, GgmlType, Span<byte>, bool>? exact)
    {
        type = FallbackType(type, cols);
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

    /// <summary>
    /// The type a row of <paramref name="cols"/> weights is written as under <paramref name="type"/>: as llama-quantize
    /// (llama_tensor_get_type), rows that are not whole 256-blocks take Q5_0 for Q4_K and Q8_0 for Q6_K, and rows that are
    /// not whole 32-blocks then F16 (e.g. stories260K's 64-wide rows and its 172-wide ffn_down).
    /// </summary>
    internal static GgmlType FallbackType(GgmlType type, int cols)
    {
        if (type is GgmlType.Q4_K or GgmlType.Q6_K && cols % BlockQ6_K.Elements != 0) type = type == GgmlType.Q4_K ? GgmlType.Q5_0 : GgmlType.Q8_0;
        return type is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 && cols % BlockQ8_0.Elements != 0 ? GgmlType.F16 : type;
    }

    private static void EncodeRow(ReadOnlySpan<float> row, GgmlType type, Span<byte> bytes)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(row).CopyTo(bytes); break;
            case GgmlType.F16: System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(row, MemoryMarshal.Cast<byte, Half>(bytes)); break;
            case GgmlType.Q8_0: GgmlBlockCodec.QuantizeRowQ8_0(row, MemoryMarshal.Cast<byte, BlockQ8_0>(bytes)); break;
            case GgmlType.Q4_0: GgmlBlockCodec.QuantizeRowQ4_0(row, MemoryMarshal.Cast<byte, BlockQ4_0>(bytes)); break;
            case GgmlType.Q5_0: GgmlBlockCodec.QuantizeRowQ5_0(row, MemoryMarshal.Cast<byte, BlockQ5_0>(bytes)); break;
            case GgmlType.Q4_K: GgmlBlockCodec.QuantizeRowQ4_K(row, MemoryMarshal.Cast<byte, BlockQ4_K>(bytes)); break;
            case GgmlType.Q6_K: GgmlBlockCodec.QuantizeRowQ6_K(row, MemoryMarshal.Cast<byte, BlockQ6_K>(bytes)); break;
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
            case GroupedInt8Matrix grouped:
                for (int c = 0; c < row.Length; c++) row[c] = grouped.Dequantize(r, c);
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

    // GroupedInt8Matrix row with groups of 32, no offsets and half scales (as read from Q8_0) → the same Q8_0 blocks.
    private static bool TryCopyGroupedRowQ8_0(IWeightMatrix matrix, int r, Span<byte> bytes)
    {
        if (matrix is not GroupedInt8Matrix { GroupSize: BlockQ8_0.Elements, HasOffsets: false, HasSuperBlockScales: false } grouped) return false;
        for (int g = 0; g < grouped.GroupCount; g++)
            if (!IsHalf(grouped.Scale(r, g))) return false;
        Span<BlockQ8_0> blocks = MemoryMarshal.Cast<byte, BlockQ8_0>(bytes);
        for (int b = 0; b < blocks.Length; b++)
        {
            blocks[b].Scale = (Half)grouped.Scale(r, b);
            Span<byte> qs = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(2);
            for (int j = 0; j < BlockQ8_0.Elements; j++) qs[j] = (byte)(sbyte)grouped.Code(r, b * BlockQ8_0.Elements + j);
        }
        return true;
    }

    // GroupedInt8Matrix row shaped as Q6_K (groups of 16 under a half super-scale per 256, int8 sub-scales, codes −32..31,
    // no offsets) → the same Q6_K blocks: d = the super-scale, sc = the sub-scales, q = code + 32 (layout on BlockQ6_K).
    private static unsafe bool TryCopyGroupedRowQ6_K(IWeightMatrix matrix, int r, Span<byte> bytes)
    {
        if (matrix is not GroupedInt8Matrix { GroupSize: 16, GroupsPerSuperBlock: 16, HasSuperBlockScales: true, HasOffsets: false } grouped
            || grouped.Cols % BlockQ6_K.Elements != 0) return false;
        int supers = grouped.SuperBlockCount;
        ReadOnlySpan<float> superScales = grouped.Scales.Slice(r * supers, supers);
        foreach (float d in superScales)
            if (!IsHalf(d)) return false;
        for (int c = 0; c < grouped.Cols; c++)
            if (grouped.Code(r, c) is < -32 or > 31) return false;
        Span<BlockQ6_K> blocks = MemoryMarshal.Cast<byte, BlockQ6_K>(bytes);
        ReadOnlySpan<sbyte> sub = grouped.SubScales.Slice(r * grouped.GroupCount, grouped.GroupCount);
        for (int b = 0; b < blocks.Length; b++)
        {
            ref BlockQ6_K block = ref blocks[b];
            block.Scale = (Half)superScales[b];
            for (int j = 0; j < 16; j++) block.Scales[j] = sub[16 * b + j];
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++)
                {
                    int at = BlockQ6_K.Elements * b + 128 * h + l;
                    int q1 = grouped.Code(r, at) + 32, q2 = grouped.Code(r, at + 32) + 32, q3 = grouped.Code(r, at + 64) + 32, q4 = grouped.Code(r, at + 96) + 32;
                    block.Low[64 * h + l] = (byte)(q1 & 0xF | (q3 & 0xF) << 4);
                    block.Low[64 * h + l + 32] = (byte)(q2 & 0xF | (q4 & 0xF) << 4);
                    block.High[32 * h + l] = (byte)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
                }
        }
        return true;
    }

    // A finite half whose widening is the same float (sign of zero included).
    private static bool IsHalf(float value) => Half.IsFinite((Half)value) && BitConverter.SingleToInt32Bits((float)(Half)value) == BitConverter.SingleToInt32Bits(value);

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
