using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Takes named tensors out of a Hugging Face safetensors checkpoint with the shape the config implies, remembers
/// which were taken, and refuses checkpoints with missing, misshapen or unexpected tensors.
/// </summary>
internal sealed class HfTensorReader : ITensorSource
{
    private readonly SafeTensorsCheckpoint _checkpoint;
    private readonly IReadOnlyList<string> _ignoredSuffixes;
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);
    private readonly IProgress<ModelLoadProgress>? _progress;
    private readonly CancellationToken _cancellationToken;

    /// <summary>Wraps an open checkpoint.</summary>
    /// <param name="checkpoint">The checkpoint to read.</param>
    /// <param name="ignoredSuffixes">Tensors that may stay untaken, by name suffix.</param>
    /// <param name="progress">Receives <see cref="ModelLoadStage.ReadingWeights"/> after each tensor read (out of the checkpoint's tensor count).</param>
    /// <param name="cancellationToken">Checked before each tensor read.</param>
    public HfTensorReader(SafeTensorsCheckpoint checkpoint, IReadOnlyList<string> ignoredSuffixes, IProgress<ModelLoadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(ignoredSuffixes);
        _checkpoint = checkpoint;
        _ignoredSuffixes = ignoredSuffixes;
        _progress = progress;
        _cancellationToken = cancellationToken;
    }

    /// <summary>Reads the weights of a <paramref name="family"/> model of <paramref name="config"/> out of <paramref name="checkpoint"/> under the family's Hugging Face names.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, misshapen or unexpected.</exception>
    public static TransformerWeights ReadWeights(ArchitectureDescription family, TransformerConfig config, SafeTensorsCheckpoint checkpoint,
        IProgress<ModelLoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(family);
        ArgumentNullException.ThrowIfNull(config);
        var tensors = new HfTensorReader(checkpoint, family.HfIgnoredSuffixes, progress, cancellationToken);
        string basePrefix = tensors.ResolvePrefix(family.HfNames.Global(ModelTensor.TokenEmbedding) + ".weight", [.. family.HfBasePrefixes]);
        return DecoderWeightsReader.Read(family, config, family.HfNames, basePrefix, tensors, family.HfNormWeightOffset);
    }

    /// <summary>The checkpoint's path.</summary>
    public string SourcePath => _checkpoint.SourcePath;

    /// <summary>Whether the checkpoint holds <paramref name="name"/>.</summary>
    public bool Has(string name) => _checkpoint.Contains(name);

    /// <summary>The first of <paramref name="prefixes"/> under which <paramref name="probe"/> exists (HF files differ in base-model prefixes).</summary>
    public string ResolvePrefix(string probe, params string[] prefixes)
    {
        foreach (string prefix in prefixes)
            if (Has(prefix + probe)) return prefix;
        throw new ModelFormatException(_checkpoint.SourcePath, prefixes[0] + probe,
            $"missing: expected it under one of the prefixes '{string.Join("', '", prefixes)}'");
    }

    /// <summary>Reads <paramref name="name"/> as FP32 after checking its shape equals <paramref name="shape"/>.</summary>
    public float[] Take(string name, params long[] shape)
    {
        if (!_checkpoint.TryGet(name, out SafeTensorInfo info))
            throw new ModelFormatException(_checkpoint.SourcePath, name, $"missing: the config implies a tensor of shape [{string.Join(", ", shape)}]");
        if (!info.Shape.SequenceEqual(shape))
            throw new ModelFormatException(_checkpoint.FilePathOf(name), name, $"expected shape [{string.Join(", ", shape)}] from the config, found {info.ShapeText}");
        _cancellationToken.ThrowIfCancellationRequested();
        _taken.Add(name);
        float[] values = _checkpoint.ReadFloat32(name);
        _progress?.Report(new ModelLoadProgress(ModelLoadStage.ReadingWeights, Math.Min(_taken.Count, _checkpoint.Tensors.Count), _checkpoint.Tensors.Count));
        return values;
    }

    /// <summary>Reads a (rows, cols) weight as an FP32 matrix.</summary>
    public Fp32Matrix TakeMatrix(string name, int rows, int cols) => new(Take(name, rows, cols), rows, cols);

    IWeightMatrix ITensorSource.Matrix(string name, int rows, int cols) => TakeMatrix(name, rows, cols);

    float[] ITensorSource.Table(string name, int rows, int cols) => Take(name, rows, cols);

    float[] ITensorSource.Vector(string name, int length) => Take(name, length);

    IWeightMatrix ITensorSource.TiedHead(string embeddingName, float[]? embedding, int rows, int cols) =>
        new Fp32Matrix(embedding ?? throw new System.Diagnostics.UnreachableException("safetensors embeddings are read as FP32 tables"), rows, cols);

    /// <summary>Throws naming the first tensor that nothing took (unless its name ends with one of the ignored suffixes).</summary>
    public void RequireAllTaken()
    {
        foreach (SafeTensorInfo info in _checkpoint.Tensors)
            if (!_taken.Contains(info.Name) && !_ignoredSuffixes.Any(s => info.Name.EndsWith(s, StringComparison.Ordinal)))
                throw new ModelFormatException(_checkpoint.FilePathOf(info.Name), info.Name,
                    $"unexpected tensor {info.ShapeText}: the config does not account for it (wrong num_hidden_layers or a different architecture?)");
    }
}
