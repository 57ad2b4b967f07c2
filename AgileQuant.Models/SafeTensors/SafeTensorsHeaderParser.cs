using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace AgileQuant.Models.SafeTensors;

/// <summary>The validated content of a safetensors JSON header.</summary>
internal sealed record SafeTensorsHeader(
    IReadOnlyList<SafeTensorInfo> TensorsInFileOrder,
    IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// Parses and validates the JSON header of a safetensors file. Format (huggingface/safetensors, README
/// "Format" and safetensors/src/tensor.rs): 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// starting with '{' (may be padded with trailing spaces), then the data section. Each entry maps a name
/// to {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the data section start
/// (absolute offset = 8 + N + begin); the optional "__metadata__" entry is a string-to-string map. The
/// tensors must tile the data section exactly: no overlap, no hole, nothing after the last tensor.
/// </summary>
internal static class SafeTensorsHeaderParser
{
    /// <summary>The header key of the free-form string metadata block.</summary>
    public const string MetadataKey = "__metadata__";

    private const int MaxShownChars = 64;

    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        MaxDepth = 16,
    };

    /// <summary>
    /// Parses <paramref name="header"/>; <paramref name="dataStart"/> is 8 + N, <paramref name="dataLength"/>
    /// the number of bytes after the header. Throws <see cref="ModelFormatException"/> on any violation.
    /// </summary>
    public static SafeTensorsHeader Parse(string filePath, ReadOnlySpan<byte> header, long dataStart, long dataLength)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new ModelFormatException(filePath, null,
                $"expected the JSON header to start with '{{', found {(header.Length == 0 ? "an empty header" : $"byte 0x{header[0]:X2}")}");
        if (!Utf8.IsValid(header))
            throw new ModelFormatException(filePath, null, "expected the header to be valid UTF-8, found invalid UTF-8 bytes");

        var entries = new List<(SafeTensorInfo Info, long Begin, long End, int Index)>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string? current = null;
        try
        {
            var reader = new Utf8JsonReader(header, ReaderOptions);
            Expect(ref reader, JsonTokenType.StartObject, filePath, null, "the header");
            while (true)
            {
                Advance(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                current = reader.GetString()!;
                if (!seen.Add(current))
                    throw new ModelFormatException(filePath, current, "expected each header key once, found a duplicate key");
                Advance(ref reader);
                if (current == MetadataKey)
                    ReadMetadata(ref reader, filePath, metadata);
                else
                    entries.Add(ReadTensor(ref reader, filePath, current, dataStart, dataLength, entries.Count));
                current = null;
            }
            // Anything but whitespace after the closing brace makes Read throw a JsonException.
            if (reader.Read())
                throw new ModelFormatException(filePath, null, $"expected only spaces after the header object, found {reader.TokenType}");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(filePath, current,
                $"expected a valid JSON object header, found invalid JSON at byte {e.BytePositionInLine}: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            throw new ModelFormatException(filePath, current,
                $"expected a valid JSON object header, found an unreadable value: {e.Message}", e);
        }

        return new SafeTensorsHeader(CheckTiling(filePath, entries, dataLength), metadata);
    }

    // Sorted by (begin, end, header order), each tensor must start where the previous one ended.
    private static List<SafeTensorInfo> CheckTiling(string filePath,
        List<(SafeTensorInfo Info, long Begin, long End, int Index)> entries, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin)
            : a.End != b.End ? a.End.CompareTo(b.End) : a.Index.CompareTo(b.Index));
        long expectedBegin = 0;
        string? previous = null;
        var ordered = new List<SafeTensorInfo>(entries.Count);
        foreach (var (info, begin, end, _) in entries)
        {
            if (begin < expectedBegin)
                throw new ModelFormatException(filePath, info.Name,
                    $"expected data_offsets to start at {expectedBegin} (end of tensor '{previous}'), found [{begin}, {end}], which overlaps '{previous}'");
            if (begin > expectedBegin)
                throw new ModelFormatException(filePath, info.Name,
                    $"expected data_offsets to start at {expectedBegin} ({(previous is null ? "start of the data section" : $"end of tensor '{previous}'")}), " +
                    $"found [{begin}, {end}]: a hole of {begin - expectedBegin} bytes (the format requires tensors to be contiguous)");
            expectedBegin = end;
            previous = info.Name;
            ordered.Add(info);
        }
        if (expectedBegin != dataLength)
            throw new ModelFormatException(filePath, previous,
                $"expected the tensors to cover the whole data section of {dataLength} bytes, found they end at {expectedBegin} " +
                $"({dataLength - expectedBegin} unclaimed bytes at the end; the format forbids holes)");
        return ordered;
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, string filePath, Dictionary<string, string> metadata)
    {
        if (reader.TokenType == JsonTokenType.Null) return;
        Expect(ref reader, JsonTokenType.StartObject, filePath, MetadataKey, "__metadata__");
        while (true)
        {
            Advance(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) return;
            string key = reader.GetString()!;
            Advance(ref reader);
            if (reader.TokenType != JsonTokenType.String)
                throw new ModelFormatException(filePath, MetadataKey,
                    $"expected a string value for metadata key '{Shorten(key)}', found {reader.TokenType}");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new ModelFormatException(filePath, MetadataKey, $"expected metadata key '{Shorten(key)}' once, found a duplicate");
        }
    }

    private static (SafeTensorInfo, long, long, int) ReadTensor(ref Utf8JsonReader reader, string filePath, string name,
        long dataStart, long dataLength, int index)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new ModelFormatException(filePath, name,
                $"expected an object with dtype, shape and data_offsets, found {reader.TokenType}");
        SafeTensorsDType? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            Advance(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            string key = reader.GetString()!;
            if (!keys.Add(key))
                throw new ModelFormatException(filePath, name, $"expected key '{Shorten(key)}' once in the entry, found a duplicate");
            Advance(ref reader);
            switch (key)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String)
                        throw new ModelFormatException(filePath, name, $"expected dtype to be a string, found {reader.TokenType}");
                    string text = reader.GetString()!;
                    if (!SafeTensorsDTypes.TryParse(text, out SafeTensorsDType parsed))
                        throw new ModelFormatException(filePath, name,
                            $"expected a dtype among {string.Join(", ", Enum.GetNames<SafeTensorsDType>())}, found unknown dtype '{Shorten(text)}'");
                    dtype = parsed;
                    break;
                case "shape":
                    shape = ReadIntegers(ref reader, filePath, name, "shape");
                    break;
                case "data_offsets":
                    offsets = ReadIntegers(ref reader, filePath, name, "data_offsets");
                    if (offsets.Length != 2)
                        throw new ModelFormatException(filePath, name,
                            $"expected data_offsets to be [begin, end], found {offsets.Length} numbers");
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (dtype is null) throw new ModelFormatException(filePath, name, "expected a 'dtype' field, found none");
        if (shape is null) throw new ModelFormatException(filePath, name, "expected a 'shape' field, found none");
        if (offsets is null) throw new ModelFormatException(filePath, name, "expected a 'data_offsets' field, found none");

        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw new ModelFormatException(filePath, name, $"expected data_offsets [begin, end] with begin <= end, found [{begin}, {end}]");
        if (end > dataLength)
            throw new ModelFormatException(filePath, name,
                $"expected data_offsets within the data section of {dataLength} bytes, found [{begin}, {end}]");

        int elementSize = SafeTensorsDTypes.ElementSize(dtype.Value);
        long count = 1;
        foreach (long dim in shape)
        {
            if (dim != 0 && count > long.MaxValue / dim)
                throw new ModelFormatException(filePath, name, $"expected an element count that fits in 64 bits, found shape {ShapeText(shape)}");
            count *= dim;
        }
        if (count > long.MaxValue / elementSize)
            throw new ModelFormatException(filePath, name,
                $"expected a byte size that fits in 64 bits, found shape {ShapeText(shape)} of {dtype}");
        long bytes = count * elementSize;
        if (bytes != end - begin)
            throw new ModelFormatException(filePath, name,
                $"expected {bytes} bytes (shape {ShapeText(shape)} x {elementSize}-byte {dtype}), found data_offsets [{begin}, {end}] spanning {end - begin} bytes");

        var info = new SafeTensorInfo(filePath, name, dtype.Value, shape, count, dataStart + begin, bytes);
        return (info, begin, end, index);
    }

    private static long[] ReadIntegers(ref Utf8JsonReader reader, string filePath, string name, string field)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new ModelFormatException(filePath, name, $"expected {field} to be an array of integers, found {reader.TokenType}");
        var values = new List<long>();
        while (true)
        {
            Advance(ref reader);
            if (reader.TokenType == JsonTokenType.EndArray) return values.ToArray();
            if (reader.TokenType != JsonTokenType.Number)
                throw new ModelFormatException(filePath, name, $"expected {field} to hold integers, found {reader.TokenType}");
            if (!reader.TryGetInt64(out long value) || value < 0)
                throw new ModelFormatException(filePath, name,
                    $"expected {field} to hold non-negative 64-bit integers, found {Shorten(Encoding.UTF8.GetString(reader.ValueSpan))}");
            values.Add(value);
        }
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string filePath, string? name, string what)
    {
        if (reader.TokenType == JsonTokenType.None) Advance(ref reader);
        if (reader.TokenType != type)
            throw new ModelFormatException(filePath, name, $"expected {what} to be a JSON {type}, found {reader.TokenType}");
    }

    private static void Advance(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
            throw new JsonException("unexpected end of the header", null, 0, reader.BytesConsumed);
    }

    internal static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    internal static string Shorten(string text) =>
        text.Length <= MaxShownChars ? text : string.Concat(text.AsSpan(0, MaxShownChars), "...");
}
