using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Little-endian reader over a file that checks every read against the bytes left in the file and
/// reports any shortfall as a <see cref="ModelFormatException"/> naming the file, the offset and the field.
/// </summary>
internal sealed class GgufFieldReader : IDisposable
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _stream;
    private readonly byte[] _buffer = new byte[1 << 16];
    private int _bufferStart;   // index of the next unread byte in _buffer
    private int _bufferEnd;     // one past the last valid byte in _buffer

    public GgufFieldReader(string path, Stream stream)
    {
        Path = path;
        _stream = stream;
        Length = stream.Length;
    }

    public string Path { get; }

    /// <summary>Total bytes in the file.</summary>
    public long Length { get; }

    /// <summary>Absolute offset of the next byte to read.</summary>
    public long Position { get; private set; }

    public long Remaining => Length - Position;

    public ModelFormatException Error(string problem) => new(Path, null, problem);

    /// <summary>Makes <paramref name="count"/> (at most the buffer size) bytes available or throws "truncated".</summary>
    private ReadOnlySpan<byte> Take(int count, string what)
    {
        if (Remaining < count)
            throw Error($"{what}: expected {count} bytes at offset {Position}, found {Remaining} (file truncated)");
        if (_bufferEnd - _bufferStart < count)
        {
            int kept = _bufferEnd - _bufferStart;
            Buffer.BlockCopy(_buffer, _bufferStart, _buffer, 0, kept);
            _bufferStart = 0;
            _bufferEnd = kept;
            while (_bufferEnd < count)
            {
                int read = _stream.Read(_buffer, _bufferEnd, _buffer.Length - _bufferEnd);
                if (read == 0) throw Error($"{what}: expected {count} bytes at offset {Position}, the file ended early (file truncated)");
                _bufferEnd += read;
            }
        }
        ReadOnlySpan<byte> span = _buffer.AsSpan(_bufferStart, count);
        _bufferStart += count;
        Position += count;
        return span;
    }

    public byte ReadUInt8(string what) => Take(1, what)[0];
    public ushort ReadUInt16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
    public uint ReadUInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
    public ulong ReadUInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));
    public float ReadSingle(string what) => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what));
    public double ReadDouble(string what) => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what));

    /// <summary>Reads a GGUF string: uint64 byte length (at most <paramref name="maxBytes"/>), then strict UTF-8 bytes.</summary>
    public string ReadString(string what, int maxBytes)
    {
        ulong length = ReadUInt64(what + " length");
        if (length > (ulong)maxBytes)
            throw Error($"{what}: expected a string of at most {maxBytes} bytes, found length {length} at offset {Position - 8}");
        if (length > (ulong)Remaining)
            throw Error($"{what}: expected {length} string bytes at offset {Position}, found {Remaining} (string length past end of file)");
        int count = (int)length;
        try
        {
            if (count <= _buffer.Length) return StrictUtf8.GetString(Take(count, what));
            byte[] large = new byte[count];
            int copied = 0;
            while (copied < count)
            {
                int chunk = Math.Min(_buffer.Length, count - copied);
                Take(chunk, what).CopyTo(large.AsSpan(copied));
                copied += chunk;
            }
            return StrictUtf8.GetString(large);
        }
        catch (DecoderFallbackException e)
        {
            throw new ModelFormatException(Path, null, $"{what}: expected UTF-8 text, found invalid bytes near offset {Position}", e);
        }
    }

    /// <summary>Skips forward to absolute offset <paramref name="position"/> (used for the data-section padding).</summary>
    public void SkipTo(long position, string what)
    {
        if (position < Position || position > Length)
            throw Error($"{what}: expected offset {position} within the file of {Length} bytes (file truncated)");
        long skip = position - Position;
        int buffered = _bufferEnd - _bufferStart;
        if (skip <= buffered)
        {
            _bufferStart += (int)skip;
        }
        else
        {
            _stream.Seek(position, SeekOrigin.Begin);
            _bufferStart = _bufferEnd = 0;
        }
        Position = position;
    }

    public void Dispose() => _stream.Dispose();
}
