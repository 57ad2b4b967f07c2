using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.SafeTensors;
using static AgileQuant.Models.QuantizedCheckpoints.QuantizedCheckpointLayout;

namespace AgileQuant.Models.QuantizedCheckpoints;

/// <summary>
/// Saves quantized <see cref="TransformerWeights"/> as one safetensors file that rebuilds them exactly
/// (<see cref="QuantizedCheckpointReader"/>) without the original checkpoint or any recalibration.
/// </summary>
/// <remarks>
/// <para><b>Metadata</b> (<c>"__metadata__"</c>, all strings):
/// <c>agilequant.format</c> = <c>"1"</c>;
/// <c>agilequant.transformer_config</c> = every <see cref="TransformerConfig"/> property as JSON (enums by name);
/// <c>agilequant.quantization_config</c> = a <see cref="QuantizationConfig"/> name (e.g. <c>W4A8-GPTQ</c>);
/// <c>agilequant.runtime</c> (written when saving a <see cref="TransformerModel"/>) =
/// <c>{"qkv_bits", "kv_cache_bits", "log2_softmax", "low_bit_token_ratio"}</c> of its <see cref="RuntimeOptions"/>
/// (absent: the scheme's defaults apply on load);
/// <c>agilequant.linears</c> = a JSON object mapping each linear's name (below) to
/// <c>{"format", "group_size", "symmetric", "activation_bits", "low_bit_activation_bits", "bias", "tied"}</c>,
/// format being <c>f32</c>, <c>int8_row</c> or <c>int4_group</c>; members at their default (0, false; activation_bits equal to the scheme's, 8 when its activations stay floating point) are omitted;
/// <c>agilequant.tokenizer</c> (written when the checkpoint carries its tokenizer, <see cref="EmbeddedTokenizer"/>) =
/// <c>{"layout": "file" | "directory", "files": [names], "end_token_ids": [ids], "chat_template": text}</c> (chat_template
/// only when the source model carries one), file i stored byte for byte as the U8 tensor <c>tokenizer_file.{i}</c> (bytes;
/// a GGUF model's vocabulary as a vocabulary-only GGUF file <c>vocabulary.gguf</c>). Caller keys are added beside these.</para>
/// <para><b>Names</b> (GGUF-style, short: on a small model the header is a visible part of the file).
/// Embeddings: <c>token_embd</c> F32 (vocab, embedding width); <c>position_embd</c> F32 (positions, hidden) for
/// learned positions. Norms <c>token_embd_norm</c>, <c>blk.{i}.attn_norm</c>, <c>blk.{i}.ffn_norm</c>,
/// <c>output_norm</c>: <c>.weight</c> F32 (dim) and, when present, <c>.bias</c> F32 (dim); kind and epsilon are
/// the config's. Linears <c>project_in</c>, <c>blk.{i}.attn_{q,k,v,output}</c>, <c>blk.{i}.ffn_{gate,up,down}</c>,
/// <c>project_out</c>, <c>lm_head</c>, with W (rows = out, cols = in):</para>
/// <list type="bullet">
/// <item><c>f32</c> (<see cref="Fp32Matrix"/>): <c>{name}.weight</c> F32 (rows, cols).</item>
/// <item><c>int8_row</c> (<see cref="Int8RowMatrix"/>): <c>{name}.codes</c> I8 (rows, cols), unpadded, and
/// <c>{name}.scales</c> F32 (rows); <c>W[r, c] = scales[r] · codes[r, c]</c>.</item>
/// <item><c>int4_group</c> (<see cref="PackedInt4Matrix"/>): <c>{name}.packed</c> U8 (rows, rowBytes) with
/// rowBytes = 16 · ceil(cols / 32), byte for byte as the format stores it: byte c / 2 of a row holds column c
/// in its LOW nibble when c is even and in its HIGH nibble when c is odd, padding nibbles are zero; symmetric
/// codes −8..7 are stored as code + 8. <c>{name}.scales</c> F32 (rows, ceil(cols / group_size)) and, when
/// asymmetric, <c>{name}.zero_points</c> U8 (rows, groups) in 0..15;
/// <c>W[r, c] = scales[r, g] · (nibble(r, c) − zero[r, g])</c>, g = c / group_size, zero = 8 when symmetric.</item>
/// <item><c>{name}.bias</c> F32 (rows) when the linear has a bias.</item>
/// </list>
/// <para>An LM head that shares the token-embedding array (tied weights) is stored once: its entry says
/// <c>"tied": true</c> and it has no tensors. Tensors are little-endian, laid out by the
/// <see cref="SafeTensorsWriter"/> (largest element size first, each aligned to its element size).</para>
/// </remarks>
public static class QuantizedCheckpointWriter
{
    /// <summary>
    /// Writes <paramref name="weights"/> (FP32, per-row int8 and grouped int4 linears, in any mix) to
    /// <paramref name="path"/> under the quantization scheme name <paramref name="configName"/>, replacing the file
    /// only once complete. <paramref name="extraMetadata"/> entries are stored beside the reserved <c>agilequant.*</c> keys.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown scheme name, a reserved metadata key, a weight format this
    /// file cannot hold, or a norm whose kind or epsilon differs from the config's.</exception>
    /// <exception cref="AgileQuantException">The weights do not fit their config, or its family is not in <see cref="ArchitectureRegistry"/>.</exception>
    // The two shipped overloads keep their optional metadata parameter; the tokenizer overload added since takes every argument.
#pragma warning disable RS0026, RS0027
    public static void Write(string path, TransformerWeights weights, string configName, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        Write(path, weights, null, configName, extraMetadata, null);
    }

    /// <summary>
    /// Writes <paramref name="model"/>'s weights as <see cref="Write(string, TransformerWeights, string, IReadOnlyDictionary{string, string}?)"/>
    /// does, plus its runtime options (attention quantization, lower-bit token ratio) so that loading reproduces its
    /// logits even where they differ from the scheme's defaults.
    /// </summary>
    /// <exception cref="ArgumentException">As for the weights-only overload.</exception>
    public static void Write(string path, TransformerModel model, string configName, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Write(path, model.Weights, model.Options, configName, extraMetadata, null);
    }

    /// <summary>
    /// As <see cref="Write(string, TransformerModel, string, IReadOnlyDictionary{string, string}?)"/>, and carries
    /// <paramref name="tokenizer"/> (its files and end tokens), so that the checkpoint loads and generates on its own.
    /// </summary>
    /// <exception cref="ArgumentException">As for the other overloads.</exception>
    /// <exception cref="ModelFormatException">A tokenizer file name is not a plain file name, repeats, or a file is empty.</exception>
    public static void Write(string path, TransformerModel model, string configName, IReadOnlyDictionary<string, string>? extraMetadata, EmbeddedTokenizer? tokenizer)
#pragma warning restore RS0026, RS0027
    {
        ArgumentNullException.ThrowIfNull(model);
        Write(path, model.Weights, model.Options, configName, extraMetadata, tokenizer);
    }

    private static void Write(string path, TransformerWeights weights, RuntimeOptions? runtime, string configName, IReadOnlyDictionary<string, string>? extraMetadata,
        EmbeddedTokenizer? tokenizer)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(configName);
        if (!QuantizationConfig.TryParse(configName, out QuantizationConfig? scheme))
            throw new ArgumentException(
                $"Expected a quantization scheme name ({string.Join(", ", QuantizationConfig.All.Select(c => c.Name))}), found \"{configName}\".", nameof(configName));
        weights.Validate();
        TransformerConfig c = weights.Config;
        TensorNameMap names = Names(c.Family);
        string Global(ModelTensor tensor) => names.Global(tensor)!;

        var writer = new SafeTensorsWriter();
        var linears = new SortedDictionary<string, LinearEntry>(StringComparer.Ordinal);
        if (extraMetadata is not null)
            foreach (var (key, value) in extraMetadata)
            {
                if (ReservedKeys.Contains(key)) throw new ArgumentException($"Metadata key '{key}' is reserved for the checkpoint itself.", nameof(extraMetadata));
                writer.SetMetadata(key, value);
            }
        writer.SetMetadata(FormatKey, weights.Layers.Any(l => l.Linears.Any(e => e.Linear.HadamardInput)) ? RotatedFormatVersion : FormatVersion);
        writer.SetMetadata(TransformerConfigKey, JsonSerializer.Serialize(c, Json));
        writer.SetMetadata(QuantizationConfigKey, scheme.Name);
        if (runtime is not null)
            writer.SetMetadata(RuntimeKey, JsonSerializer.Serialize(new RuntimeEntry
            {
                QkvBits = runtime.Attention.QkvBits,
                KvCacheBits = runtime.Attention.KvCacheBits,
                Log2Softmax = runtime.Attention.Log2Softmax,
                LowBitTokenRatio = runtime.LowBitTokenRatio,
            }, Json));

        writer.AddFloat32(Global(ModelTensor.TokenEmbedding), [c.VocabSize, c.EmbeddingWidth], weights.TokenEmbeddingAsFloats());
        if (weights.PositionEmbedding is { } positions)
            writer.AddFloat32(Global(ModelTensor.PositionEmbedding), [positions.Length / c.HiddenSize, c.HiddenSize], positions);
        AddNorm(writer, c, Global(ModelTensor.EmbeddingNorm), weights.EmbeddingNorm);
        int defaultBits = DefaultActivationBits(scheme);
        AddLinear(writer, linears, Global(ModelTensor.ProjectIn), weights.ProjectIn, defaultBits, null);
        for (int i = 0; i < weights.Layers.Count; i++)
        {
            LayerWeights layer = weights.Layers[i];
            foreach (LayerTensor role in LayerTensors.Norms) AddNorm(writer, c, names.Layer(i, role)!, layer.Norm(role));
            foreach (LayerTensor role in LayerTensors.Linears) AddLinear(writer, linears, names.Layer(i, role)!, layer.Linear(role), defaultBits, null);
        }
        AddNorm(writer, c, Global(ModelTensor.FinalNorm), weights.FinalNorm);
        AddLinear(writer, linears, Global(ModelTensor.ProjectOut), weights.ProjectOut, defaultBits, null);
        AddLinear(writer, linears, Global(ModelTensor.LmHead), weights.LmHead, defaultBits, weights.TokenEmbedding);
        writer.SetMetadata(LinearsKey, JsonSerializer.Serialize(linears, Json));
        if (tokenizer is not null)
        {
            tokenizer.Validate(path);
            writer.SetMetadata(TokenizerKey, TokenizerEntry.Serialize(tokenizer));
            for (int i = 0; i < tokenizer.Files.Count; i++)
                writer.AddUInt8(TokenizerEntry.TensorName(i), [tokenizer.Files[i].Contents.Length], tokenizer.Files[i].Contents);
        }
        writer.Write(path);
    }

    private static void AddNorm(SafeTensorsWriter writer, TransformerConfig c, string name, NormLayer? norm)
    {
        if (norm is null) return;
        if (norm.Kind != c.Norm || BitConverter.SingleToInt32Bits(norm.Epsilon) != BitConverter.SingleToInt32Bits(c.NormEpsilon))
            throw new ArgumentException($"Norm '{name}' is {norm.Kind} with epsilon {norm.Epsilon}; the checkpoint stores only norms of the config's kind {c.Norm} and epsilon {c.NormEpsilon}.", nameof(c));
        writer.AddFloat32(name + ".weight", [norm.Weight.Length], norm.Weight);
        if (norm.Bias is not null) writer.AddFloat32(name + ".bias", [norm.Bias.Length], norm.Bias);
    }

    private static void AddLinear(SafeTensorsWriter writer, IDictionary<string, LinearEntry> linears, string name, LinearLayer? linear, int defaultBits, float[]? tiedTo)
    {
        if (linear is null) return;
        IWeightMatrix w = linear.Weight;
        LinearEntry entry;
        switch (w)
        {
            case Fp32Matrix f when tiedTo is not null && ReferenceEquals(f.Data, tiedTo):
                entry = new LinearEntry { Format = Fp32Format, Tied = true };
                break;
            case Fp32Matrix f:
                entry = new LinearEntry { Format = Fp32Format };
                writer.AddFloat32(name + ".weight", [f.Rows, f.Cols], f.Data);
                break;
            case Int8RowMatrix m:
                entry = new LinearEntry { Format = Int8RowFormat, Symmetric = true };
                var codes = new sbyte[(long)m.Rows * m.Cols]; // (rows, cols): the padded stride dropped
                ReadOnlySpan<sbyte> padded = m.Codes; // read once: on AVX2 machines it is rebuilt from the kernel copy
                for (int r = 0; r < m.Rows; r++) padded.Slice(r * m.RowStride, m.Cols).CopyTo(codes.AsSpan(r * m.Cols, m.Cols));
                writer.AddInt8(name + ".codes", [m.Rows, m.Cols], codes);
                writer.AddFloat32(name + ".scales", [m.Rows], m.Scales);
                break;
            case PackedInt4Matrix m:
                entry = new LinearEntry { Format = Int4GroupFormat, GroupSize = m.GroupSize, Symmetric = m.IsSymmetric };
                writer.AddUInt8(name + ".packed", [m.Rows, m.RowBytes], m.Packed);
                writer.AddFloat32(name + ".scales", [m.Rows, m.GroupCount], m.Scales);
                if (!m.IsSymmetric) writer.AddUInt8(name + ".zero_points", [m.Rows, m.GroupCount], m.ZeroPoints);
                break;
            default:
                throw new ArgumentException($"Linear '{name}' has weight format {w.GetType().Name}; a quantized checkpoint holds Fp32Matrix, Int8RowMatrix and PackedInt4Matrix.", nameof(linear));
        }
        entry = entry with
        {
            ActivationBits = linear.ActivationBits == defaultBits ? null : linear.ActivationBits,
            LowBitActivationBits = linear.LowBitActivationBits,
            HadamardInput = linear.HadamardInput,
            Bias = linear.Bias is not null,
        };
        if (linear.Bias is not null) writer.AddFloat32(name + ".bias", [linear.Bias.Length], linear.Bias);
        linears.Add(name, entry);
    }
}
