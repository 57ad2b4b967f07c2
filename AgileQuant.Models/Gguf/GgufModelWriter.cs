using System.Runtime.InteropServices;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>Options for <see cref="GgufModelWriter.Write"/>.</summary>
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
/// Writes a LLaMA-family model as a GGUF v3 file llama.cpp loads: <c>llama.*</c> hyper-parameters, a
/// <c>tokenizer.ggml.*</c> SentencePiece vocabulary, and the tensors under llama.cpp's names.
/// </summary>
/// <remarks>
/// Q/K rows of a <see cref="RotaryPairing.RotateHalf"/> model (Hugging Face) are permuted to the interleaved layout
/// GGUF uses (llama.cpp convert_hf_to_gguf.py <c>LlamaModel.permute</c>): GGUF row <c>h·hd + 2i + j</c> = source row
/// <c>h·hd + j·hd/2 + i</c>. Exact mappings: <see cref="PackedInt4Matrix"/> symmetric (any group size) → Q4_0 and
/// <see cref="Int8RowMatrix"/> → Q8_0 keep every code, only scales round to fp16; every other source/target pair
/// dequantizes a row and quantizes it with ggml's reference quantizer (<see cref="GgmlBlockCodec"/>).
/// </remarks>
public static class GgufModelWriter
{
    /// <summary>Writes <paramref name="weights"/> with <paramref name="vocabulary"/> to <paramref name="path"/>.</summary>
    /// <exception cref="AgileQuantException">The model is not LLaMA-shaped (RMSNorm, rotary, SwiGLU, pre-norm, no biases) or the vocabulary size differs.</exception>
    public static void Write(string path, TransformerWeights weights, GgufVocabulary vocabulary, GgufWriteOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(vocabulary);
        options ??= new GgufWriteOptions();
        TransformerConfig c = weights.Config;
        RequireLlamaShaped(weights);
        if (vocabulary.Tokens.Count != c.VocabSize || vocabulary.Scores.Count != c.VocabSize || vocabulary.TokenTypes.Count != c.VocabSize)
            throw new AgileQuantException($"GGUF export needs one token per embedding row: expected {c.VocabSize} tokens, scores and types, found {vocabulary.Tokens.Count}, {vocabulary.Scores.Count} and {vocabulary.TokenTypes.Count}.");
        GgmlType type = options.WeightType, embeddingType = options.EmbeddingType ?? type, outputType = options.OutputType ?? type;
        foreach (GgmlType t in new[] { type, embeddingType, outputType })
            if (t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0 or GgmlType.Q4_0))
                throw new AgileQuantException($"GGUF export writes F32, F16, Q8_0 or Q4_0 weights, found {t}.");

        var w = new GgufWriter();
        AddModelMetadata(w, c, vocabulary, type, options.Name);
        var embedding = new Fp32Matrix(weights.TokenEmbedding, c.VocabSize, c.HiddenSize);
        AddMatrix(w, "token_embd.weight", embedding, embeddingType, null);
        bool permute = c.RotaryPairing == RotaryPairing.RotateHalf;
        for (int i = 0; i < c.NumLayers; i++)
        {
            LayerWeights l = weights.Layers[i];
            string p = $"blk.{i}.";
            AddVector(w, p + "attn_norm.weight", l.AttentionNorm.Weight);
            AddMatrix(w, p + "attn_q.weight", l.Query.Weight, type, permute ? InterleavedRope(c.NumHeads, c.HeadDim) : null);
            AddMatrix(w, p + "attn_k.weight", l.Key.Weight, type, permute ? InterleavedRope(c.NumKvHeads, c.HeadDim) : null);
            AddMatrix(w, p + "attn_v.weight", l.Value.Weight, type, null);
            AddMatrix(w, p + "attn_output.weight", l.Output.Weight, type, null);
            AddVector(w, p + "ffn_norm.weight", l.MlpNorm.Weight);
            AddMatrix(w, p + "ffn_gate.weight", l.Gate!.Weight, type, null);
            AddMatrix(w, p + "ffn_up.weight", l.Up.Weight, type, null);
            AddMatrix(w, p + "ffn_down.weight", l.Down.Weight, type, null);
        }
        AddVector(w, "output_norm.weight", weights.FinalNorm!.Weight);
        bool tied = weights.LmHead.Weight is Fp32Matrix head && ReferenceEquals(head.Data, weights.TokenEmbedding);
        if (!tied) AddMatrix(w, "output.weight", weights.LmHead.Weight, outputType, null);
        w.Write(path);
    }

    /// <summary>The <c>general.*</c>, <c>llama.*</c> and <c>tokenizer.ggml.*</c> keys of a model of <paramref name="c"/> whose matrices are <paramref name="type"/>.</summary>
    internal static void AddModelMetadata(GgufWriter w, TransformerConfig c, GgufVocabulary vocabulary, GgmlType type, string name)
    {
        const string a = GgufModelReader.Architecture + ".";
        w.AddString("general.architecture", GgufModelReader.Architecture);
        w.AddString("general.name", name);
        w.AddUInt32("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q4_0 => 2u, _ => 7u });
        w.AddUInt32("general.quantization_version", 2);
        w.AddUInt32(a + "vocab_size", (uint)c.VocabSize);
        w.AddUInt32(a + "context_length", (uint)c.MaxSequenceLength);
        w.AddUInt32(a + "embedding_length", (uint)c.HiddenSize);
        w.AddUInt32(a + "block_count", (uint)c.NumLayers);
        w.AddUInt32(a + "feed_forward_length", (uint)c.IntermediateSize);
        w.AddUInt32(a + "rope.dimension_count", (uint)c.HeadDim);
        w.AddUInt32(a + "attention.head_count", (uint)c.NumHeads);
        w.AddUInt32(a + "attention.head_count_kv", (uint)c.NumKvHeads);
        w.AddFloat32(a + "attention.layer_norm_rms_epsilon", c.NormEpsilon);
        w.AddFloat32(a + "rope.freq_base", c.RotaryTheta);
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

    /// <summary>Source row of GGUF row r for q/k of a rotate-half model: r = h·hd + 2i + j ← h·hd + j·hd/2 + i.</summary>
    private static Func<int, int> InterleavedRope(int heads, int headDim) => r =>
    {
        int h = r / headDim, within = r % headDim;
        return h * headDim + (within & 1) * (headDim / 2) + within / 2;
    };

    private static void RequireLlamaShaped(TransformerWeights weights)
    {
        TransformerConfig c = weights.Config;
        bool biases = weights.Layers.Any(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down }.Any(x => x?.Bias is not null));
        if (c.Norm != NormKind.RmsNorm || c.Positions != PositionKind.Rotary || c.Mlp != MlpKind.SwiGlu || !c.PreNorm || !c.FinalNorm
            || c.EmbeddingNorm || c.EmbeddingWidth != c.HiddenSize || weights.ProjectIn is not null || weights.ProjectOut is not null || biases
            || weights.Layers.Any(l => l.Gate is null || l.AttentionNorm.Bias is not null || l.MlpNorm.Bias is not null))
            throw new AgileQuantException($"GGUF export supports LLaMA-shaped models (RMSNorm, rotary positions, SwiGLU, pre-norm, no biases), found a '{c.Family}' model.");
    }

    internal static void AddVector(GgufWriter w, string name, float[] values) =>
        w.AddTensor(name, [values.Length], GgmlType.F32, stream => stream.Write(MemoryMarshal.AsBytes(values.AsSpan())));

    private static void AddMatrix(GgufWriter w, string name, IWeightMatrix matrix, GgmlType type, Func<int, int>? sourceRow) =>
        AddMatrix(w, name, matrix.Rows, matrix.Cols, type,
            (r, row) => DequantizeRow(matrix, sourceRow?.Invoke(r) ?? r, row),
            (r, t, bytes) => t == GgmlType.Q8_0 && TryCopyInt8Row(matrix, sourceRow?.Invoke(r) ?? r, bytes)
                || t == GgmlType.Q4_0 && TryCopyInt4Row(matrix, sourceRow?.Invoke(r) ?? r, bytes));

    /// <summary>
    /// Adds a (rows, cols) matrix whose row r <paramref name="row"/> produces in FP32, encoded as <paramref name="type"/>
    /// (F16 when a Q8_0/Q4_0 row is not whole 32-blocks); <paramref name="exact"/>, when given, may encode a row itself.
    /// </summary>
    internal static void AddMatrix(GgufWriter w, string name, int rows, int cols, GgmlType type, Action<int, Span<float>> row,
        Func<int, GgmlType, Span<byte>, bool>? exact = null)
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
