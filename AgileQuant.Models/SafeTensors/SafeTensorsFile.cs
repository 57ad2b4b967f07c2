using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace AgileQuant.Models.SafeTensors;

/// <summary>
/// A read-only safetensors file — memory-mapped, or read into native memory — whose header has been fully validated on
/// <see cref="Open"/>: 8-byte little-endian header length N (at most <see cref="MaxHeaderBytes"/>),
/// N bytes of UTF-8 JSON, then the data section, which the tensors tile exactly in offset order.
/// Reads are thread-safe; <see cref="Dispose"/> must not race with them. Once <see cref="ReadFloat32(string, Span{float})"/>
/// or <see cref="CopyBytes"/> has copied a mapped tensor, its pages are handed back to the OS (Linux), so a loaded model's
/// resident set does not keep the file's bytes too; reading the tensor again faults them back in.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>Largest accepted JSON header, in bytes (the same cap as huggingface/safetensors).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const int HeaderLengthBytes = 8;
    private const int ConversionChunkElements = 1 << 24;

    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private MemoryMappedFile? _map;
    private MemoryMappedViewAccessor? _view;
    private byte* _base;
    private byte* _copy; // the whole file in native memory when not mapped (freed on Dispose)
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle? _handle; // owned by the map; used to notice truncation (null when copied)
    private int _disposed;

    private SafeTensorsFile(string filePath, long fileLength, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePointer,
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle)
    {
        _handle = handle;
        FilePath = filePath;
        FileLength = fileLength;
        _map = map;
        _view = view;
        _base = basePointer;
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePointer, HeaderLengthBytes));
        long available = fileLength - HeaderLengthBytes;
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException(filePath, null,
                $"expected a header length of at most {MaxHeaderBytes} bytes, found {headerLength}");
        if (headerLength > (ulong)available)
            throw new ModelFormatException(filePath, null,
                $"expected a header length of at most {available} bytes (file is {fileLength} bytes), found {headerLength}");
        HeaderLength = (long)headerLength;
        long dataStart = HeaderLengthBytes + HeaderLength;
        var header = SafeTensorsHeaderParser.Parse(filePath,
            new ReadOnlySpan<byte>(basePointer + HeaderLengthBytes, (int)HeaderLength), dataStart, fileLength - dataStart);
        Tensors = header.TensorsInFileOrder;
        Metadata = header.Metadata;
        _byName = new Dictionary<string, SafeTensorInfo>(Tensors.Count, StringComparer.Ordinal);
        foreach (SafeTensorInfo info in Tensors) _byName.Add(info.Name, info);
    }

    /// <summary>Absolute path of the file.</summary>
    public string FilePath { get; }

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Length N of the JSON header; the data section starts at 8 + N.</summary>
    public long HeaderLength { get; }

    /// <summary>The string-to-string <c>"__metadata__"</c> block (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>All tensors in file order (ascending data offset).</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>True when the file is memory-mapped; false when it was read into native memory (<c>memoryMap: false</c>).</summary>
    public bool IsMemoryMapped => _copy == null;

    /// <summary>
    /// Maps <paramref name="path"/> read-only (or, with <paramref name="memoryMap"/> false, reads the whole file into
    /// native memory with ordinary reads, for file systems where mapping fails or is slow) and validates its header and
    /// tensor table. Throws <see cref="ModelFormatException"/> naming the file (and tensor) when the file cannot be opened or its content is malformed.
    /// </summary>
    public static SafeTensorsFile Open(string path, bool memoryMap = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
        string fullPath = Path.GetFullPath(path);
        if (!memoryMap)
        {
            try { return OpenCopied(fullPath); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFormatException(fullPath, null, "could not read the safetensors file: " + e.Message, e);
            }
        }
        // A missing, unreadable or special file is reported like a malformed one, naming the file.
        FileStream stream = GuardedFile.OpenRead(fullPath, bufferSize: 1, FileOptions.RandomAccess);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long length = stream.Length;
            if (length < HeaderLengthBytes)
                throw new ModelFormatException(fullPath, null,
                    $"expected at least {HeaderLengthBytes} bytes (the header length field), found {length}");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            pointerAcquired = true;
            return new SafeTensorsFile(fullPath, length, map, view, pointer + view.PointerOffset, stream.SafeFileHandle);
        }
        catch
        {
            if (pointerAcquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    // Reads the whole file into a native buffer that Dispose frees; the buffer is the base pointer, so every read path is shared.
    private static SafeTensorsFile OpenCopied(string fullPath)
    {
        byte* copy = null;
        try
        {
            using (FileStream stream = GuardedFile.OpenRead(fullPath, bufferSize: 1, FileOptions.SequentialScan))
            {
                long length = stream.Length;
                if (length < HeaderLengthBytes)
                    throw new ModelFormatException(fullPath, null,
                        $"expected at least {HeaderLengthBytes} bytes (the header length field), found {length}");
                copy = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)length);
                for (long done = 0; done < length;)
                {
                    int chunk = (int)Math.Min(1 << 30, length - done);
                    int read = RandomAccess.Read(stream.SafeFileHandle, new Span<byte>(copy + done, chunk), done);
                    if (read == 0)
                        throw new ModelFormatException(fullPath, null, $"expected {length} bytes, found the file ending at {done} (truncated while reading)");
                    done += read;
                }
                var file = new SafeTensorsFile(fullPath, length, null, null, copy, null);
                file._copy = copy;
                return file;
            }
        }
        catch
        {
            if (copy != null) System.Runtime.InteropServices.NativeMemory.Free(copy);
            throw;
        }
    }

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGet(string name, out SafeTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byName.TryGetValue(name, out info!);
    }

    /// <summary>The tensor named <paramref name="name"/>; <see cref="ModelFormatException"/> if the file has none.</summary>
    public SafeTensorInfo Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_byName.TryGetValue(name, out SafeTensorInfo? info)) return info;
        throw new ModelFormatException(FilePath, name, $"expected the tensor in the file, found no such name among {Tensors.Count} tensors");
    }

    /// <summary>True if the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => TryGet(name, out _);

    /// <summary>
    /// The tensor's raw little-endian bytes, straight from the mapping (no copy). The span is valid only
    /// until <see cref="Dispose"/>; copy it (<see cref="CopyBytes"/>) to keep the data longer.
    /// </summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        SafeTensorInfo info = Get(name);
        RequireMappedAndWhole(name);
        if (info.ByteLength > int.MaxValue)
            throw new ModelFormatException(FilePath, name, $"expected at most {int.MaxValue} bytes to expose as one span, found {info.ByteLength}");
        return new ReadOnlySpan<byte>(_base + info.DataOffset, (int)info.ByteLength);
    }

    /// <summary>Copies the tensor's raw bytes into <paramref name="destination"/>, whose length must equal <see cref="SafeTensorInfo.ByteLength"/>.</summary>
    public void CopyBytes(string name, Span<byte> destination)
    {
        SafeTensorInfo info = Get(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"expected a destination of {info.ByteLength} bytes for '{name}', found {destination.Length}", nameof(destination));
        GetBytes(name).CopyTo(destination);
        ReleaseMapped(info);
    }

    /// <summary>The tensor converted to float32 (F32 copied, F16 widened, BF16 bit-shifted), row-major.</summary>
    public float[] ReadFloat32(string name)
    {
        SafeTensorInfo info = Get(name);
        SafeTensorsFloatConversion.RequireFloat(info);
        if (info.ElementCount > Array.MaxLength)
            throw new ModelFormatException(FilePath, name, $"expected at most {Array.MaxLength} elements to read into one array, found {info.ElementCount}");
        var values = new float[info.ElementCount];
        ReadFloat32(name, values);
        return values;
    }

    /// <summary>
    /// Converts the tensor to float32 into <paramref name="destination"/>, whose length must equal
    /// <see cref="SafeTensorInfo.ElementCount"/>. Non-float dtypes throw <see cref="ModelFormatException"/>.
    /// </summary>
    public void ReadFloat32(string name, Span<float> destination)
    {
        SafeTensorInfo info = Get(name);
        SafeTensorsFloatConversion.RequireFloat(info);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"expected a destination of {info.ElementCount} floats for '{name}', found {destination.Length}", nameof(destination));
        RequireMappedAndWhole(name);
        // Converted in chunks straight from the mapping, so tensors over 2 GiB of source bytes are readable too.
        int elementSize = SafeTensorsDTypes.ElementSize(info.DType);
        byte* source = _base + info.DataOffset;
        for (int done = 0; done < destination.Length;)
        {
            int chunk = Math.Min(ConversionChunkElements, destination.Length - done);
            SafeTensorsFloatConversion.ToSingle(info.DType,
                new ReadOnlySpan<byte>(source + (long)done * elementSize, chunk * elementSize), destination.Slice(done, chunk));
            done += chunk;
        }
        ReleaseMapped(info);
    }

    // Converted or copied: the tensor's mapped pages need not stay resident (a later read faults them back in).
    private void ReleaseMapped(SafeTensorInfo info)
    {
        if (_handle is not null) MappedFilePages.Release(_base + info.DataOffset, info.ByteLength);
    }

    // A file truncated while mapped makes reads past its new end fault (SIGBUS on Linux), so the length is checked
    // before each read; a truncation racing with the read itself remains the caller's to avoid (copy, then close).
    private void RequireMappedAndWhole(string name)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_handle is null) return; // read into memory: a later truncation cannot affect it
        long length;
        try { length = RandomAccess.GetLength(_handle); }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw new ModelFormatException(FilePath, name, "could not check the file's length before reading: " + e.Message, e);
        }
        if (length < FileLength)
            throw new ModelFormatException(FilePath, name, $"expected the file to still be {FileLength} bytes, found {length} (truncated while open)");
    }

    /// <summary>Unmaps the file (or frees its copy). Calling it again, also from several threads at once, does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _base = null;
        if (_copy != null)
        {
            System.Runtime.InteropServices.NativeMemory.Free(_copy);
            _copy = null;
        }
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _view = null;
        }
        _map?.Dispose();
        _map = null;
    }
}
