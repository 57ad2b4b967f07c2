using System.Runtime.InteropServices;
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

/// <summary>A quantized checkpoint as loaded: the weights, the scheme name and the whole metadata block.</summary>
/// <param name="Weights">The rebuilt weights (validated against their config).</param>
/// <param name="ConfigName">The <see cref="QuantizationConfig"/> name recorded in the file (catalog spelling).</param>
/// <param name="Metadata">Every <c>"__metadata__"</c> entry, the reserved <c>agilequant.*</c> keys included.</param>
public sealed record QuantizedCheckpoint(TransformerWeights Weights, string ConfigName, IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>The recorded <c>agilequant.runtime</c> entry, or null when the file has none (the scheme's defaults apply).</summary>
    internal RuntimeEntry? Runtime { get; init; }

    /// <summary>The tokenizer the checkpoint carries (<c>agilequant.tokenizer</c>), or null when it carries none.</summary>
    public EmbeddedTokenizer? Tokenizer { get; init; }
}

/// <summary>
/// Loads a file written by <see cref="QuantizedCheckpointWriter"/> (layout in its remarks): memory-mapped
/// through <see cref="SafeTensorsFile"/>, every tensor checked against the recorded config before its bytes are
/// copied once into the runtime formats; packed codes are taken as stored, never re-quantized.
/// </summary>
public static class QuantizedCheckpointReader
{
    /// <summary>True when <paramref name="metadata"/> marks an AgileQuant quantized checkpoint (has <c>agilequant.format</c>).</summary>
    public static bool IsQuantizedCheckpoint(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.ContainsKey(FormatKey);
    }

    /// <summary>
    /// The <see cref="RuntimeOptions"/> to run <paramref name="checkpoint"/> with on <paramref name="kernel"/>: the recorded
    /// attention quantization and lower-bit token ratio (else the scheme's, as <see cref="ModelQuantizer.RuntimeOptionsFor(IMatMulKernel, QuantizationConfig)"/>
    /// gives them), and a 4-bit-activation kernel of the same instruction set whenever a linear has 4-bit activations.
    /// </summary>
    public static RuntimeOptions RuntimeOptionsFor(QuantizedCheckpoint checkpoint, IMatMulKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(kernel);
        RuntimeOptions options = ModelQuantizer.RuntimeOptionsFor(kernel, QuantizationConfig.Parse(checkpoint.ConfigName));
        if (checkpoint.Runtime is { } recorded)
            options = options with
            {
                Attention = new AttentionQuantization { QkvBits = recorded.QkvBits, KvCacheBits = recorded.KvCacheBits, Log2Softmax = recorded.Log2Softmax },
                LowBitTokenRatio = recorded.LowBitTokenRatio,
            };
        bool fourBitInputs = checkpoint.Weights.Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down })
            .Any(linear => linear is not null && (linear.ActivationBits == 4 || linear.LowBitActivationBits == 4));
        if (fourBitInputs && options.FourBitActivationKernel is null)
            options = options with
            {
                FourBitActivationKernel = KernelSelector.Create(kernel is KernelSet set
                    ? new KernelOptions { Preference = set.Isa, Threads = set.Threads, ActivationBits = 4 }
                    : new KernelOptions { ActivationBits = 4 }),
            };
        return options;
    }

    /// <summary>Loads and validates the checkpoint at <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a version-1 AgileQuant checkpoint, its metadata is
    /// missing or malformed, names an unknown scheme, or a tensor is missing, unexpected, of the wrong dtype or
    /// shape, or holds invalid values (non-finite scales, zero points above 15, non-zero padding).</exception>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="memoryMap">Map the file (default) or read it into memory (see <see cref="SafeTensorsFile.Open"/>).</param>
    public static QuantizedCheckpoint Load(string path, bool memoryMap = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a quantized checkpoint file, found no such file");
        using SafeTensorsFile file = SafeTensorsFile.Open(path, memoryMap);
        var reader = new TensorReader(file);
        IReadOnlyDictionary<string, string> metadata = file.Metadata;
        string version = RequireMetadata(file, FormatKey);
        if (version != FormatVersion && version != RotatedFormatVersion)
            throw new ModelFormatException(file.FilePath, null, $"expected {FormatKey} \"{FormatVersion}\" or \"{RotatedFormatVersion}\", found \"{version}\"");
        string schemeName = RequireMetadata(file, QuantizationConfigKey);
        if (!QuantizationConfig.TryParse(schemeName, out QuantizationConfig? scheme))
            throw new ModelFormatException(file.FilePath, null,
                $"expected {QuantizationConfigKey} to be one of {string.Join(", ", QuantizationConfig.All.Select(c => c.Name))}, found \"{schemeName}\"");
        TransformerConfig c = ParseJson<TransformerConfig>(file, TransformerConfigKey);
        ConfigValueChecks.Require(file.FilePath, c, ConfigKeys.Properties(TransformerConfigKey));
        try { c.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(file.FilePath, null, $"{TransformerConfigKey}: {e.Message}", e); }
        if (!ArchitectureRegistry.TryForFamily(c.Family, out ArchitectureDescription? family))
            throw new ModelFormatException(file.FilePath, null,
                $"expected the Family in {TransformerConfigKey} to be one of {string.Join(", ", ArchitectureRegistry.All.Select(a => a.Family))}, found '{c.Family}'");
        TensorNameMap names = family.CheckpointNames;
        string Global(ModelTensor tensor) => names.Global(tensor)!;
        // Every layer stores at least its two norm weights: a config claiming more layers is refused before allocating them.
        if (c.NumLayers > file.Tensors.Count / 2)
            throw new ModelFormatException(file.FilePath, null, $"expected at most {file.Tensors.Count / 2} layers for the {file.Tensors.Count} tensors in the file, found NumLayers = {c.NumLayers} in {TransformerConfigKey}");
        RuntimeEntry? runtime = file.Metadata.ContainsKey(RuntimeKey) ? ParseJson<RuntimeEntry>(file, RuntimeKey) : null;
        if (runtime is not null && (runtime.QkvBits is not (0 or 4 or 8) || runtime.KvCacheBits is not (0 or 4 or 8)
            || !(runtime.LowBitTokenRatio >= 0 && runtime.LowBitTokenRatio < 1)))
            throw new ModelFormatException(file.FilePath, null,
                $"expected {RuntimeKey} with qkv_bits and kv_cache_bits in {{0, 4, 8}} and low_bit_token_ratio in [0, 1), found {file.Metadata[RuntimeKey]}");
        var linears = new Dictionary<string, LinearEntry>(ParseJson<Dictionary<string, LinearEntry>>(file, LinearsKey), StringComparer.Ordinal);
        var used = new HashSet<string>(StringComparer.Ordinal);

        LinearLayer? Linear(string name, int rows, int cols, bool required, float[]? tiedTo = null)
        {
            if (!linears.TryGetValue(name, out LinearEntry? entry))
            {
                if (required) throw new ModelFormatException(file.FilePath, name, $"expected an entry for this linear in {LinearsKey}, found none");
                return null;
            }
            // The declared structure decides which linears exist: one the config does not call for (a gate under a ReLU MLP) is refused, not carried along.
            if (!required)
                throw new ModelFormatException(file.FilePath, name, $"expected no such linear in {LinearsKey} for the config in {TransformerConfigKey} ({c.Family}, {c.Mlp} MLP), found one");
            used.Add(name);
            if (!scheme.QuantizesWeights && entry.Format != Fp32Format)
                throw new ModelFormatException(file.FilePath, name, $"expected f32 weights under the scheme {scheme.Name}, found {entry.Format}");
            return reader.Linear(name, entry, entry.ActivationBits ?? DefaultActivationBits(scheme), rows, cols, tiedTo, Global(ModelTensor.LmHead));
        }

        string embeddingName = Global(ModelTensor.TokenEmbedding), positionName = Global(ModelTensor.PositionEmbedding);
        float[] embedding = reader.Float32(embeddingName, c.VocabSize, c.EmbeddingWidth);
        float[]? positions = null;
        if (c.Positions == PositionKind.Learned) // with other positions, a stored table is an extra tensor (RequireAllRead)
        {
            int rows = reader.Rows(positionName, c.HiddenSize);
            if (rows < (long)c.MaxSequenceLength + c.LearnedPositionOffset)
                throw new ModelFormatException(file.FilePath, positionName,
                    $"expected at least {(long)c.MaxSequenceLength + c.LearnedPositionOffset} rows (MaxSequenceLength {c.MaxSequenceLength} + LearnedPositionOffset {c.LearnedPositionOffset}), found {rows}");
            positions = reader.Float32(positionName, rows, c.HiddenSize);
        }
        var layers = new LayerWeights[c.NumLayers];
        var linearsOfLayer = new Dictionary<LayerTensor, LinearLayer?>();
        for (int i = 0; i < layers.Length; i++)
        {
            // The linears first: a config claiming more layers than the file has is named by its first missing linear entry.
            foreach (LayerTensor role in LayerTensors.Linears)
            {
                (int rows, int cols) = role.Shape(c);
                linearsOfLayer[role] = Linear(names.Layer(i, role)!, rows, cols, required: role.IsRequiredBy(c));
            }
            layers[i] = LayerWeights.FromParts(role => reader.Norm(names.Layer(i, role)!, role.NormWidth(c), c, required: role.IsRequiredBy(c)), role => linearsOfLayer[role]);
        }
        bool projected = c.EmbeddingWidth != c.HiddenSize;
        var weights = new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            PositionEmbedding = positions,
            EmbeddingNorm = reader.Norm(Global(ModelTensor.EmbeddingNorm), c.HiddenSize, c, required: c.EmbeddingNorm),
            ProjectIn = Linear(Global(ModelTensor.ProjectIn), c.HiddenSize, c.EmbeddingWidth, required: projected),
            Layers = layers,
            FinalNorm = reader.Norm(Global(ModelTensor.FinalNorm), c.HiddenSize, c, required: c.FinalNorm),
            ProjectOut = Linear(Global(ModelTensor.ProjectOut), c.EmbeddingWidth, c.HiddenSize, required: projected),
            LmHead = Linear(Global(ModelTensor.LmHead), c.VocabSize, c.EmbeddingWidth, required: true, tiedTo: embedding)!,
        };
        EmbeddedTokenizer? tokenizer = file.Metadata.ContainsKey(TokenizerKey) ? ReadTokenizer(file, reader, c.VocabSize) : null;
        string? strayLinear = linears.Keys.FirstOrDefault(k => !used.Contains(k));
        if (strayLinear is not null)
            throw new ModelFormatException(file.FilePath, strayLinear, $"expected only the linears of a {c.NumLayers}-layer {c.Family} model in {LinearsKey}, found this one too");
        reader.RequireAllRead();
        try { weights.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(file.FilePath, null, e.Message, e); }
        return new QuantizedCheckpoint(weights, scheme.Name, metadata) { Runtime = runtime, Tokenizer = tokenizer };
    }

    private static EmbeddedTokenizer ReadTokenizer(SafeTensorsFile file, TensorReader reader, int vocabSize)
    {
        TokenizerEntry entry = ParseJson<TokenizerEntry>(file, TokenizerKey);
        if (entry.Layout is not (TokenizerEntry.FileLayout or TokenizerEntry.DirectoryLayout) || entry.Files is null || entry.EndTokenIds is null)
            throw new ModelFormatException(file.FilePath, null, $"expected {TokenizerKey} with layout \"file\" or \"directory\", files and end_token_ids, found {file.Metadata[TokenizerKey]}");
        foreach (int id in entry.EndTokenIds)
            if ((uint)id >= (uint)vocabSize)
                throw new ModelFormatException(file.FilePath, null, $"expected end_token_ids in {TokenizerKey} inside the vocabulary [0, {vocabSize}), found {id}");
        var files = new EmbeddedTokenizerFile[entry.Files.Length];
        for (int i = 0; i < files.Length; i++) files[i] = new EmbeddedTokenizerFile(entry.Files[i] ?? "", reader.Bytes(TokenizerEntry.TensorName(i)));
        var tokenizer = new EmbeddedTokenizer(files, entry.Layout == TokenizerEntry.DirectoryLayout, entry.EndTokenIds) { ChatTemplate = entry.ChatTemplate };
        tokenizer.Validate(file.FilePath);
        return tokenizer;
    }

    private static string RequireMetadata(SafeTensorsFile file, string key) =>
        file.Metadata.TryGetValue(key, out string? value) ? value
            : throw new ModelFormatException(file.FilePath, null, $"expected the metadata key {key} of an AgileQuant quantized checkpoint, found none");

    private static T ParseJson<T>(SafeTensorsFile file, string key) where T : class
    {
        string text = RequireMetadata(file, key);
        try
        {
            return JsonSerializer.Deserialize<T>(text, Json)
                ?? throw new ModelFormatException(file.FilePath, null, $"expected a JSON object in {key}, found null");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(file.FilePath, null, $"expected well-formed JSON in {key}, found an error: {e.Message}", e);
        }
    }

    /// <summary>Reads tensors of one file with exact dtype and shape checks, remembering which were read.</summary>
    private sealed class TensorReader(SafeTensorsFile file)
    {
        private readonly HashSet<string> _read = new(StringComparer.Ordinal);

        public int Rows(string name, int cols)
        {
            SafeTensorInfo info = Info(name, SafeTensorsDType.F32);
            if (info.Rank != 2 || info.Shape[1] != cols || info.Shape[0] < 1 || info.Shape[0] > int.MaxValue)
                throw new ModelFormatException(file.FilePath, name, $"expected shape [rows, {cols}], found {info.ShapeText}");
            return (int)info.Shape[0];
        }

        /// <summary>A one-dimensional U8 tensor's bytes, copied.</summary>
        public byte[] Bytes(string name)
        {
            SafeTensorInfo info = Info(name, SafeTensorsDType.U8);
            if (info.Rank != 1) throw new ModelFormatException(file.FilePath, name, $"expected shape [bytes], found {info.ShapeText}");
            return file.GetBytes(name).ToArray();
        }

        public float[] Float32(string name, params long[] shape) => MemoryMarshal.Cast<byte, float>(Bytes(name, SafeTensorsDType.F32, shape)).ToArray();

        public NormLayer? Norm(string name, int width, TransformerConfig c, bool required)
        {
            string weightName = name + ".weight";
            if (!required)
                return file.Contains(weightName) || file.Contains(name + ".bias")
                    ? throw new ModelFormatException(file.FilePath, weightName, $"expected no such norm for the config in {TransformerConfigKey}, found one")
                    : null;
            float[] weight = Float32(weightName, width);
            if (c.Norm == NormKind.RmsNorm && file.Contains(name + ".bias"))
                throw new ModelFormatException(file.FilePath, name + ".bias", "expected no bias on an RMSNorm, found one");
            float[]? bias = file.Contains(name + ".bias") ? Float32(name + ".bias", width) : null;
            return new NormLayer(c.Norm, weight, bias, c.NormEpsilon);
        }

        public LinearLayer Linear(string name, LinearEntry entry, int activationBits, int rows, int cols, float[]? tiedTo, string headName)
        {
            if (activationBits is < 2 or > 32)
                throw new ModelFormatException(file.FilePath, name, $"expected activation_bits in 2..32, found {activationBits}");
            if (entry.LowBitActivationBits != 0 && (entry.LowBitActivationBits < 2 || entry.LowBitActivationBits > activationBits))
                throw new ModelFormatException(file.FilePath, name, $"expected low_bit_activation_bits 0 or in 2..{activationBits}, found {entry.LowBitActivationBits}");
            if (entry.Tied && (tiedTo is null || entry.Format != Fp32Format))
                throw new ModelFormatException(file.FilePath, name, $"expected \"tied\" only on an f32 {headName}, found it on {name} ({entry.Format})");
            IWeightMatrix weight = entry.Format switch
            {
                Fp32Format => new Fp32Matrix(entry.Tied ? tiedTo! : Float32(name + ".weight", rows, cols), rows, cols),
                Int8RowFormat => Int8Rows(name, entry, rows, cols),
                Int4GroupFormat => Int4Groups(name, entry, rows, cols),
                _ => throw new ModelFormatException(file.FilePath, name,
                    $"expected format {Fp32Format}, {Int8RowFormat} or {Int4GroupFormat}, found \"{entry.Format}\""),
            };
            float[]? bias = entry.Bias ? Float32(name + ".bias", rows) : null;
            return new LinearLayer(weight, bias) { ActivationBits = activationBits, LowBitActivationBits = entry.LowBitActivationBits, HadamardInput = entry.HadamardInput };
        }

        public void RequireAllRead()
        {
            SafeTensorInfo? stray = file.Tensors.FirstOrDefault(t => !_read.Contains(t.Name));
            if (stray is not null)
                throw new ModelFormatException(file.FilePath, stray.Name, $"expected only the tensors the config and {LinearsKey} call for, found this extra one ({stray.DType} {stray.ShapeText})");
        }

        private Int8RowMatrix Int8Rows(string name, LinearEntry entry, int rows, int cols)
        {
            if (!entry.Symmetric || entry.GroupSize != 0)
                throw new ModelFormatException(file.FilePath, name, $"expected symmetric per-row int8 (group_size 0), found symmetric={entry.Symmetric}, group_size={entry.GroupSize}");
            ReadOnlySpan<sbyte> codes = MemoryMarshal.Cast<byte, sbyte>(Bytes(name + ".codes", SafeTensorsDType.I8, rows, cols)); // (rows, cols)
            ReadOnlySpan<float> scales = Scales(name + ".scales", " (one per row)", rows);                                                          // (rows)
            return new Int8RowMatrix(codes, scales, rows, cols);
        }

        private PackedInt4Matrix Int4Groups(string name, LinearEntry entry, int rows, int cols)
        {
            if (entry.GroupSize is not (32 or 64 or 128))
                throw new ModelFormatException(file.FilePath, name, $"expected group_size 32, 64 or 128, found {entry.GroupSize}");
            int groups = (cols + entry.GroupSize - 1) / entry.GroupSize;
            int rowBytes = (cols + PackedInt4Matrix.BlockColumns - 1) / PackedInt4Matrix.BlockColumns * (PackedInt4Matrix.BlockColumns / 2);
            ReadOnlySpan<byte> packed = Bytes(name + ".packed", SafeTensorsDType.U8, rows, rowBytes);              // (rows, rowBytes)
            string grouping = $" ({rows} rows x {groups} groups of {entry.GroupSize} over {cols} columns)";
            ReadOnlySpan<float> scales = Scales(name + ".scales", grouping, rows, groups);                                        // (rows, groups)
            ReadOnlySpan<byte> zeros = entry.Symmetric ? default : Bytes(name + ".zero_points", SafeTensorsDType.U8, grouping, rows, groups); // (rows, groups)
            for (int i = 0; i < zeros.Length; i++)
                if (zeros[i] > 15)
                    throw new ModelFormatException(file.FilePath, name + ".zero_points", $"expected zero points in 0..15, found {zeros[i]} at ({i / groups}, {i % groups})");
            try { return PackedInt4Matrix.FromPacked(packed, scales, zeros, rows, cols, entry.GroupSize); }
            catch (ArgumentException e) { throw new ModelFormatException(file.FilePath, name + ".packed", e.Message, e); }
        }

        private ReadOnlySpan<float> Scales(string name, string layout, params long[] shape)
        {
            ReadOnlySpan<float> scales = MemoryMarshal.Cast<byte, float>(Bytes(name, SafeTensorsDType.F32, layout, shape));
            for (int i = 0; i < scales.Length; i++)
                if (!float.IsFinite(scales[i]))
                    throw new ModelFormatException(file.FilePath, name, $"expected finite scales, found {scales[i]} at index {i}");
            return scales;
        }

        private ReadOnlySpan<byte> Bytes(string name, SafeTensorsDType dtype, params long[] shape) => Bytes(name, dtype, "", shape);

        private ReadOnlySpan<byte> Bytes(string name, SafeTensorsDType dtype, string layout, params long[] shape)
        {
            SafeTensorInfo info = Info(name, dtype);
            if (!info.Shape.SequenceEqual(shape))
                throw new ModelFormatException(file.FilePath, name, $"expected shape {SafeTensorsHeaderParser.ShapeText(shape)}{layout}, found {info.ShapeText}");
            return file.GetBytes(name);
        }

        private SafeTensorInfo Info(string name, SafeTensorsDType dtype)
        {
            if (!file.TryGet(name, out SafeTensorInfo info))
                throw new ModelFormatException(file.FilePath, name, $"expected a {dtype} tensor, found none in the file");
            if (info.DType != dtype)
                throw new ModelFormatException(file.FilePath, name, $"expected dtype {dtype}, found {info.DType}");
            _read.Add(name);
            return info;
        }
    }
}
