using System.Text.Json;

namespace AgileQuant.Models.SafeTensors;

/// <summary>
/// The weights of one model as one or more safetensors files: a single file, or shards listed by a
/// Hugging Face index (<c>model.safetensors.index.json</c>: <c>{"metadata": {...}, "weight_map": {tensor: shard}}</c>).
/// For an index, every shard must exist beside it, every mapped tensor must be in its shard, and no
/// tensor may appear in two shards or in a shard without being mapped.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    /// <summary>Name of the single-file checkpoint in a model directory.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Name of the shard index in a model directory.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private const long MaxIndexBytes = 100_000_000;

    private readonly Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> _byName;
    private readonly SafeTensorsFile[] _files;
    private int _disposed;

    private SafeTensorsCheckpoint(string sourcePath, SafeTensorsFile[] files,
        Dictionary<string, (SafeTensorsFile, SafeTensorInfo)> byName, List<SafeTensorInfo> tensors)
    {
        SourcePath = sourcePath;
        _files = files;
        _byName = byName;
        Tensors = tensors;
    }

    /// <summary>The file opened: the single weights file or the shard index.</summary>
    public string SourcePath { get; }

    /// <summary>The weights files, in shard order (one entry for a single-file checkpoint).</summary>
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>All tensors: shard by shard (file names in ordinal order), each shard in file order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>
    /// Opens a checkpoint. <paramref name="path"/> is a model directory (<c>model.safetensors</c> preferred
    /// over the index, as in transformers' <c>from_pretrained</c>), an index file (<c>*.json</c>) or a single weights file such as
    /// <c>model.f16.safetensors</c>. With <paramref name="variant"/> (e.g. <c>"f16"</c>) a directory is searched
    /// for Hugging Face's variant names <c>model.safetensors.index.f16.json</c> / <c>model.f16.safetensors</c>.
    /// With <paramref name="memoryMap"/> false the files are read into memory instead of mapped (see <see cref="SafeTensorsFile.Open"/>).
    /// </summary>
    public static SafeTensorsCheckpoint Open(string path, string? variant = null, bool memoryMap = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        if (Directory.Exists(fullPath))
        {
            string index = Path.Combine(fullPath, variant is null ? IndexFileName : $"model.safetensors.index.{variant}.json");
            string single = Path.Combine(fullPath, variant is null ? SingleFileName : $"model.{variant}.safetensors");
            if (File.Exists(single)) return OpenSingle(single, memoryMap);
            if (File.Exists(index)) return OpenIndex(index, memoryMap);
            throw new ModelFormatException(fullPath, null,
                $"expected {Path.GetFileName(single)} or {Path.GetFileName(index)} in the model directory, found neither");
        }
        if (!File.Exists(fullPath)) throw new FileNotFoundException("checkpoint not found", fullPath);
        return fullPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(fullPath, memoryMap) : OpenSingle(fullPath, memoryMap);
    }

    private static SafeTensorsCheckpoint OpenSingle(string filePath, bool memoryMap)
    {
        SafeTensorsFile file = SafeTensorsFile.Open(filePath, memoryMap);
        var byName = new Dictionary<string, (SafeTensorsFile, SafeTensorInfo)>(file.Tensors.Count, StringComparer.Ordinal);
        foreach (SafeTensorInfo info in file.Tensors) byName.Add(info.Name, (file, info));
        return new SafeTensorsCheckpoint(file.FilePath, [file], byName, [.. file.Tensors]);
    }

    private static SafeTensorsCheckpoint OpenIndex(string indexPath, bool memoryMap)
    {
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath);
        string directory = Path.GetDirectoryName(indexPath)!;
        var shardNames = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (tensor, shard) in weightMap)
        {
            if (shard.Length == 0 || Path.GetFileName(shard) != shard || shard is "." or "..")
                throw new ModelFormatException(indexPath, tensor, $"expected a shard file name without folders, found '{shard}'");
            if (!File.Exists(Path.Combine(directory, shard)))
                throw new ModelFormatException(indexPath, tensor, $"expected shard file '{shard}' beside the index, found no such file");
            shardNames.Add(shard);
        }

        var files = new List<SafeTensorsFile>();
        try
        {
            var shardFiles = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (string shard in shardNames)
            {
                SafeTensorsFile file = SafeTensorsFile.Open(Path.Combine(directory, shard), memoryMap);
                files.Add(file);
                shardFiles.Add(shard, file);
            }
            var byName = new Dictionary<string, (SafeTensorsFile, SafeTensorInfo)>(weightMap.Count, StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                SafeTensorsFile file = shardFiles[shard];
                if (!file.TryGet(tensor, out SafeTensorInfo info))
                    throw new ModelFormatException(file.FilePath, tensor,
                        $"expected the tensor in this shard (weight_map of {Path.GetFileName(indexPath)}), found it missing");
                byName.Add(tensor, (file, info));
            }
            var tensors = new List<SafeTensorInfo>(weightMap.Count);
            foreach (SafeTensorsFile file in files)
            {
                foreach (SafeTensorInfo info in file.Tensors)
                {
                    if (!weightMap.TryGetValue(info.Name, out string? mapped))
                        throw new ModelFormatException(file.FilePath, info.Name,
                            $"expected every tensor of the shard in weight_map of {Path.GetFileName(indexPath)}, found it unlisted");
                    if (!ReferenceEquals(shardFiles[mapped], file))
                        throw new ModelFormatException(file.FilePath, info.Name,
                            $"expected the tensor only in shard '{mapped}', found it also in '{Path.GetFileName(file.FilePath)}'");
                    tensors.Add(info);
                }
            }
            return new SafeTensorsCheckpoint(indexPath, [.. files], byName, tensors);
        }
        catch
        {
            foreach (SafeTensorsFile file in files) file.Dispose();
            throw;
        }
    }

    // Reads weight_map (tensor name -> shard file name) from the index, refusing duplicate tensor names.
    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        byte[] json = GuardedFile.ReadAllBytes(indexPath, MaxIndexBytes);
        Dictionary<string, string>? map = null;
        string? current = null;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new ModelFormatException(indexPath, null, $"expected a JSON object, found {reader.TokenType}");
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string key = reader.GetString()!;
                reader.Read();
                if (key != "weight_map")
                {
                    reader.Skip();
                    continue;
                }
                if (map is not null) throw new ModelFormatException(indexPath, null, "expected one weight_map, found a duplicate key");
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw new ModelFormatException(indexPath, null, $"expected weight_map to be an object, found {reader.TokenType}");
                map = new Dictionary<string, string>(StringComparer.Ordinal);
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    current = reader.GetString()!;
                    reader.Read();
                    if (reader.TokenType != JsonTokenType.String)
                        throw new ModelFormatException(indexPath, current, $"expected a shard file name string, found {reader.TokenType}");
                    if (!map.TryAdd(current, reader.GetString()!))
                        throw new ModelFormatException(indexPath, current, "expected each tensor once in weight_map, found a duplicate");
                }
                current = null;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException(indexPath, current, $"expected a valid JSON index, found: {e.Message}", e);
        }
        return map ?? throw new ModelFormatException(indexPath, null, "expected a 'weight_map' object, found none");
    }

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGet(string name, out SafeTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(name);
        bool found = _byName.TryGetValue(name, out var entry);
        info = entry.Info;
        return found;
    }

    /// <summary>The tensor named <paramref name="name"/>; <see cref="ModelFormatException"/> if the checkpoint has none.</summary>
    public SafeTensorInfo Get(string name) => Locate(name).Info;

    /// <summary>True if the checkpoint holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => TryGet(name, out _);

    /// <summary>The file holding the tensor named <paramref name="name"/>.</summary>
    public string FilePathOf(string name) => Locate(name).File.FilePath;

    /// <summary>The tensor converted to float32 (see <see cref="SafeTensorsFile.ReadFloat32(string)"/>).</summary>
    public float[] ReadFloat32(string name) => Locate(name).File.ReadFloat32(name);

    /// <summary>Converts the tensor to float32 into <paramref name="destination"/> (length = element count).</summary>
    public void ReadFloat32(string name, Span<float> destination) => Locate(name).File.ReadFloat32(name, destination);

    /// <summary>The tensor's raw bytes from the mapping, valid until <see cref="Dispose"/>.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => Locate(name).File.GetBytes(name);

    /// <summary>Copies the tensor's raw bytes into <paramref name="destination"/> (length = byte length).</summary>
    public void CopyBytes(string name, Span<byte> destination) => Locate(name).File.CopyBytes(name, destination);

    private (SafeTensorsFile File, SafeTensorInfo Info) Locate(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_byName.TryGetValue(name, out var entry)) return entry;
        throw new ModelFormatException(SourcePath, name, $"expected the tensor in the checkpoint, found no such name among {Tensors.Count} tensors");
    }

    /// <summary>Unmaps every file. Calling it again, also from several threads at once, does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (SafeTensorsFile file in _files) file.Dispose();
    }
}
