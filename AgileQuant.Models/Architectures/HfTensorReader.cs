using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Takes named tensors out of a safetensors checkpoint with the shape the config implies, remembers
/// which were taken, and refuses checkpoints with missing, misshapen or unexpected tensors.
/// </summary>
public sealed class HfTensorReader
{
    private readonly SafeTensorsCheckpoint _checkpoint;
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);
    private readonly IProgress<ModelLoadProgress>? _progress;
    private readonly CancellationToken _cancellationToken;

    /// <summary>Wraps an open checkpoint.</summary>
    /// <param name="checkpoint">The checkpoint to read.</param>
    /// <param name="progress">Receives <see cref="ModelLoadStage.ReadingWeights"/> after each tensor read (out of the checkpoint's tensor count).</param>
    /// <param name="cancellationToken">Checked before each tensor read.</param>
    public HfTensorReader(SafeTensorsCheckpoint checkpoint, IProgress<ModelLoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        _checkpoint = checkpoint;
        _progress = progress;
        _cancellationToken = cancellationToken;
    }

    /// <summary>The checkpoint read from.</summary>
    public SafeTensorsCheckpoint Checkpoint => _checkpoint;

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

    /// <summary>Marks <paramref name="name"/> as accounted for without reading it (e.g. a tied head stored anyway).</summary>
    public void Ignore(string name) => _taken.Add(name);

    /// <summary>Throws naming the first tensor that no mapping took (unless it ends with one of <paramref name="ignorableSuffixes"/>).</summary>
    public void RequireAllTaken(params string[] ignorableSuffixes)
    {
        foreach (SafeTensorInfo info in _checkpoint.Tensors)
            if (!_taken.Contains(info.Name) && !ignorableSuffixes.Any(s => info.Name.EndsWith(s, StringComparison.Ordinal)))
                throw new ModelFormatException(_checkpoint.FilePathOf(info.Name), info.Name,
                    $"unexpected tensor {info.ShapeText}: the config does not account for it (wrong num_hidden_layers or a different architecture?)");
    }
}
