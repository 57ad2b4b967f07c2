using System.IO.MemoryMappedFiles;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Read-only memory map of a GGUF file whose header <see cref="GgufFile"/> has validated: every tensor's bytes
/// are then a span into the mapping, bounded by the header's checked offsets, and nothing is read that is not used.
/// </summary>
public sealed unsafe class GgufTensorData : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private bool _disposed;

    private GgufTensorData(GgufFile file, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        File = file;
        _map = map;
        _view = view;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
    }

    /// <summary>The header whose tensors this maps.</summary>
    public GgufFile File { get; }

    /// <summary>Maps <paramref name="file"/>'s file, checking it still has the length its header was read from.</summary>
    /// <exception cref="ModelFormatException">The file changed size or cannot be mapped.</exception>
    public static GgufTensorData Open(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        MemoryMappedFile? map = null;
        FileStream stream = GuardedFile.OpenRead(file.FilePath);
        try
        {
            long length = stream.Length;
            if (length != file.FileLength)
                throw new ModelFormatException(file.FilePath, null, $"expected the file to still be {file.FileLength} bytes, found {length}");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            MemoryMappedViewAccessor view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new GgufTensorData(file, map, view);
        }
        catch (Exception e)
        {
            if (map is null) stream.Dispose();
            else map.Dispose();
            if (e is IOException or UnauthorizedAccessException)
                throw new ModelFormatException(file.FilePath, null, "could not map the GGUF file: " + e.Message, e);
            throw;
        }
    }

    /// <summary>
    /// Bytes [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) of <paramref name="tensor"/>'s
    /// data (a row or a run of rows; spans are int-sized, so large tensors are read in pieces).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the tensor.</exception>
    public ReadOnlySpan<byte> Bytes(GgufTensorInfo tensor, long start, int length)
    {
        RequireOwnTensor(tensor);
        if (start < 0 || length < 0 || start > tensor.ByteSize - length)
            throw new ArgumentOutOfRangeException(nameof(start), $"Expected a range inside the tensor's {tensor.ByteSize} bytes, found [{start}, {start + length}).");
        return new ReadOnlySpan<byte>(_base + tensor.AbsoluteOffset + start, length);
    }

    /// <summary>
    /// Tells the OS that <paramref name="tensor"/>'s bytes have been converted and are not needed now: on Linux its mapped
    /// pages stop counting in the process's resident set (the page cache keeps them). Spans from <see cref="Bytes"/> stay
    /// valid and read the same bytes (faulted back in from the file), so this changes memory use, never results.
    /// </summary>
    public void Release(GgufTensorInfo tensor)
    {
        RequireOwnTensor(tensor);
        MappedFilePages.Release(_base + tensor.AbsoluteOffset, tensor.ByteSize);
    }

    private void RequireOwnTensor(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ReferenceEquals(File.FindTensor(tensor.Name), tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not one of {File.FilePath}'s tensors", nameof(tensor));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
