namespace AgileQuant.Models.Onnx;

/// <summary>Protocol-buffer wire types (protobuf.dev/programming-guides/encoding, "Message Structure").</summary>
internal enum WireType
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    Fixed32 = 5,
}

/// <summary>
/// A forward-only reader of protocol-buffer wire format over one message's bytes: each field is a varint key
/// <c>(field_number &lt;&lt; 3) | wire_type</c> followed by its payload. Every length is checked against the bytes
/// left in the enclosing message, so a lying length raises <see cref="ModelFormatException"/> instead of reading past it.
/// </summary>
internal ref struct ProtobufReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _filePath;
    private readonly string _message;
    private readonly long _baseOffset;
    private int _position;

    /// <summary>Reads the message in <paramref name="data"/>, which starts at <paramref name="baseOffset"/> in the file (for messages).</summary>
    public ProtobufReader(ReadOnlySpan<byte> data, string filePath, string message, long baseOffset)
    {
        _data = data;
        _filePath = filePath;
        _message = message;
        _baseOffset = baseOffset;
        _position = 0;
    }

    /// <summary>File offset of the next byte to read.</summary>
    public readonly long FileOffset => _baseOffset + _position;

    /// <summary>Reads the next field key; false at the end of the message.</summary>
    public bool TryReadKey(out int fieldNumber, out WireType wireType)
    {
        fieldNumber = 0;
        wireType = default;
        if (_position >= _data.Length) return false;
        long at = FileOffset;
        ulong key = ReadVarint();
        ulong number = key >> 3;
        if (number == 0 || number > 536_870_911)
            throw Error($"expected a field number in [1, 2^29 − 1] at byte {at}, found {number}");
        fieldNumber = (int)number;
        wireType = (WireType)(key & 7);
        if (wireType is WireType.StartGroup or WireType.EndGroup || (int)wireType > 5)
            throw Error($"expected wire type 0, 1, 2 or 5 for field {fieldNumber} at byte {at}, found {(int)wireType}");
        return true;
    }

    /// <summary>Reads a base-128 varint (at most 10 bytes).</summary>
    public ulong ReadVarint()
    {
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (_position >= _data.Length) throw Error($"expected a varint at byte {FileOffset}, found the end of the {_message}");
            byte b = _data[_position++];
            if (shift == 63 && b > 1) throw Error($"expected a varint of at most 64 bits at byte {FileOffset - 1}, found more");
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw Error($"expected a varint of at most 10 bytes at byte {FileOffset}, found more");
    }

    /// <summary>Reads a varint as a signed 64-bit integer (two's complement, as int64/int32 fields encode).</summary>
    public long ReadInt64() => unchecked((long)ReadVarint());

    /// <summary>Reads a varint that must fit an int32 field.</summary>
    public int ReadInt32(string field)
    {
        long value = ReadInt64();
        if (value < int.MinValue || value > int.MaxValue) throw Error($"expected {field} to fit 32 bits, found {value}");
        return (int)value;
    }

    /// <summary>Reads a length-delimited payload; <paramref name="payloadFileOffset"/> is its offset in the file.</summary>
    public ReadOnlySpan<byte> ReadLengthDelimited(out long payloadFileOffset)
    {
        long at = FileOffset;
        ulong length = ReadVarint();
        int left = _data.Length - _position;
        if (length > (ulong)left)
            throw Error($"expected a length of at most {left} bytes (the rest of the {_message}) at byte {at}, found {length}");
        payloadFileOffset = FileOffset;
        ReadOnlySpan<byte> payload = _data.Slice(_position, (int)length);
        _position += (int)length;
        return payload;
    }

    /// <summary>Reads a length-delimited UTF-8 string.</summary>
    public string ReadString()
    {
        ReadOnlySpan<byte> bytes = ReadLengthDelimited(out _);
        try
        {
            return new System.Text.UTF8Encoding(false, true).GetString(bytes);
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new ModelFormatException(_filePath, null, $"expected a UTF-8 string in the {_message} at byte {FileOffset - bytes.Length}, found invalid bytes", e);
        }
    }

    /// <summary>Reads 4 little-endian bytes.</summary>
    public uint ReadFixed32()
    {
        if (_data.Length - _position < 4) throw Error($"expected 4 bytes at byte {FileOffset}, found {_data.Length - _position}");
        uint value = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_data.Slice(_position, 4));
        _position += 4;
        return value;
    }

    /// <summary>Skips the payload of a field of <paramref name="wireType"/>.</summary>
    public void Skip(WireType wireType)
    {
        switch (wireType)
        {
            case WireType.Varint: ReadVarint(); break;
            case WireType.Fixed32: ReadFixed32(); break;
            case WireType.Fixed64:
                if (_data.Length - _position < 8) throw Error($"expected 8 bytes at byte {FileOffset}, found {_data.Length - _position}");
                _position += 8;
                break;
            case WireType.LengthDelimited: ReadLengthDelimited(out _); break;
            default: throw Error($"expected a wire type to skip, found {(int)wireType}");
        }
    }

    /// <summary>Throws unless <paramref name="found"/> is <paramref name="expected"/> for <paramref name="field"/>.</summary>
    public readonly void Expect(WireType found, WireType expected, string field)
    {
        if (found != expected) throw Error($"expected wire type {(int)expected} for {field}, found {(int)found}");
    }

    private readonly ModelFormatException Error(string problem) => new(_filePath, null, $"{_message}: {problem}");
}
