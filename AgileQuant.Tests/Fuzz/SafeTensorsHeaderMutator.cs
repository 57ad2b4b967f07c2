using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware safetensors mutations: parses the 8-byte length + JSON header + data of a valid input
/// and lies in it (huge, negative, fractional and overflowing dims; offsets past the end, reversed,
/// overlapping or of the wrong arity; wrong and unknown dtypes; missing and extra fields; duplicate keys,
/// also through escapes; deep and huge JSON; bad metadata; invalid UTF-8 and lone surrogates; a lying
/// header length; truncated or grown data; odd padding). Inputs it cannot parse are returned unchanged.
/// </summary>
public sealed class SafeTensorsHeaderMutator : IFuzzMutator
{
    private const string Metadata = "__metadata__";
    private static readonly JsonSerializerOptions Serializer = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly string[] DTypes = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
        "I32", "U32", "F32", "F64", "I64", "U64", "F12", "f32", "", "F4", "C64", "F32 ", "\u0000"];
    private static readonly string[] HugeNumbers = ["2147483648", "4294967296", "9007199254740993", "4611686018427387904",
        "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "-1",
        "-9223372036854775808", "1.5", "1e3", "1e400", "-0", "0.0", "\"8\"", "true", "null", "[]", "{}", "1" + new string('0', 400)];

    /// <inheritdoc/>
    public string Name => "safetensors-structure";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        if (input.Length < 8) return input;
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(input);
        if (headerLength > (ulong)(input.Length - 8)) return input;
        ReadOnlySpan<byte> header = input.AsSpan(8, (int)headerLength);
        if (!Utf8.IsValid(header)) return input;
        try
        {
            if (JsonNode.Parse(header) is not JsonObject root) return input;
            var edit = new HeaderEdit(root, input[(8 + (int)headerLength)..], random);
            edit.Apply();
            return edit.Assemble();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            // An earlier stacked mutation left a header this mutator cannot edit (e.g. a lone surrogate escape).
            return input;
        }
    }

    // One mutation of a parsed header; raw JSON fragments are spliced in after serialization through markers.
    private sealed class HeaderEdit(JsonObject root, byte[] data, Random random)
    {
        private readonly Dictionary<string, string> _raw = [];
        private byte[] _data = data;
        private ulong? _lengthLie;
        private byte[]? _headerBytePatch;
        private string _padding = "";

        private List<string> TensorNames => root.Select(p => p.Key).Where(k => k != Metadata).ToList();

        private JsonObject? RandomTensor(out string name)
        {
            List<string> names = TensorNames;
            name = names.Count == 0 ? "" : names[random.Next(names.Count)];
            return names.Count == 0 ? null : root[name] as JsonObject;
        }

        // A JSON string value replaced by raw text on assembly.
        private JsonNode Raw(string json)
        {
            string marker = $"@@RAW{_raw.Count}@@";
            _raw[$"\"{marker}\""] = json;
            return JsonValue.Create(marker);
        }

        // A whole "key":value property replaced by raw text on assembly.
        private void RawProperty(JsonObject target, string json)
        {
            string marker = $"@@PROP{_raw.Count}@@";
            target[marker] = 0;
            _raw[$"\"{marker}\":0"] = json;
        }

        private long Pick(params long[] values) => values[random.Next(values.Length)];

        public void Apply()
        {
            JsonObject? tensor = RandomTensor(out string name);
            JsonArray? shape = tensor?["shape"] as JsonArray;
            JsonArray? offsets = tensor?["data_offsets"] as JsonArray;
            switch (random.Next(20))
            {
                case 0:
                    _lengthLie = (ulong)Pick(0, 1, 2, 7, 100_000_000, 100_000_001, long.MaxValue, -1, int.MaxValue, uint.MaxValue + 1L)
                        + (ulong)random.Next(3);
                    break;
                case 1 when shape is { Count: > 0 }:
                    shape[random.Next(shape.Count)] = Raw(HugeNumbers[random.Next(HugeNumbers.Length)]);
                    break;
                case 2 when shape is not null:
                    for (int i = random.Next(1, 4); i > 0; i--) shape.Add(Pick(0, 1, 2, 3, 1L << 31, 1L << 32, 1L << 62, long.MaxValue));
                    break;
                case 3 when offsets is { Count: 2 }:
                    offsets[random.Next(2)] = _data.Length + Pick(1, 2, 4, 8, 1L << 32, long.MaxValue - _data.Length);
                    break;
                case 4 when offsets is { Count: 2 }:
                    offsets[random.Next(2)] = Raw(HugeNumbers[random.Next(HugeNumbers.Length)]);
                    break;
                case 5 when tensor is not null:
                {
                    // overlap: copy another tensor's offsets, or slide this one by a few bytes
                    JsonObject? other = RandomTensor(out _);
                    if (other?["data_offsets"] is JsonArray theirs && random.Next(2) == 0) tensor["data_offsets"] = theirs.DeepClone();
                    else if (offsets is { Count: 2 })
                    {
                        long shift = Pick(-8, -4, -2, -1, 1, 2, 4, 8);
                        offsets[0] = (offsets[0]?.GetValue<long>() ?? 0) + shift;
                        offsets[1] = (offsets[1]?.GetValue<long>() ?? 0) + shift;
                    }
                    break;
                }
                case 6 when offsets is { Count: 2 }:
                    (offsets[0], offsets[1]) = (offsets[1]?.DeepClone(), offsets[0]?.DeepClone());
                    break;
                case 7 when tensor is not null:
                    tensor["data_offsets"] = Raw(random.Next(5) switch { 0 => "[]", 1 => "[0]", 2 => "[0,0,0]", 3 => "\"0,4\"", _ => "{\"0\":4}" });
                    break;
                case 8 when tensor is not null:
                    tensor["dtype"] = random.Next(8) == 0 ? Raw(random.Next(2) == 0 ? "null" : "11") : DTypes[random.Next(DTypes.Length)];
                    break;
                case 9 when tensor is not null:
                    tensor.Remove(new[] { "dtype", "shape", "data_offsets" }[random.Next(3)]);
                    break;
                case 10 when tensor is not null:
                {
                    int depth = random.Next(4) == 0 ? random.Next(64, 5000) : random.Next(1, 20);
                    tensor["extra"] = Raw(new string('[', depth) + new string(']', depth));
                    break;
                }
                case 11 when tensor is not null:
                    // duplicate key at top level or inside the entry, sometimes spelled with an escape
                    if (random.Next(2) == 0) RawProperty(root, $"\"{Escape(name, random.Next(2) == 0)}\":{tensor.ToJsonString(Serializer)}");
                    else RawProperty(tensor, random.Next(2) == 0 ? "\"dtype\":\"F32\"" : "\"d\\u0074ype\":\"U8\"");
                    break;
                case 12:
                    root[Metadata] = random.Next(7) switch
                    {
                        0 => Raw("1"),
                        1 => Raw("[\"a\"]"),
                        2 => Raw("{\"k\":1}"),
                        3 => Raw("{\"k\":null}"),
                        4 => Raw("{\"k\":{\"n\":\"v\"}}"),
                        5 => Raw("{\"k\":\"a\",\"k\":\"b\"}"),
                        _ => new JsonObject { ["k"] = new string('m', random.Next(1, 1 << 16)) },
                    };
                    break;
                case 13:
                {
                    byte[][] invalid = [[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xC0, 0xAF], [0x80]];
                    _headerBytePatch = invalid[random.Next(invalid.Length)];
                    break;
                }
                case 14 when tensor is not null:
                    root.Remove(name);
                    RawProperty(root, $"\"{(random.Next(2) == 0 ? "\\ud800" : "\\udfff\\ud800")}{name}\":{tensor.ToJsonString(Serializer)}");
                    break;
                case 15:
                    if (random.Next(2) == 0)
                    {
                        for (int i = random.Next(1, random.Next(8) == 0 ? 5_000 : 200); i > 0; i--)
                            root[$"pad.{i}"] = new JsonObject { ["dtype"] = "U8", ["shape"] = new JsonArray(0), ["data_offsets"] = new JsonArray(0, 0) };
                    }
                    else root[new string('k', random.Next(1, 1 << 16))] = Raw("{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}");
                    break;
                case 16:
                {
                    int change = random.Next(1, 17);
                    _data = random.Next(2) == 0 ? _data[..Math.Max(0, _data.Length - change)] : [.. _data, .. new byte[change]];
                    break;
                }
                case 17:
                    _padding = new[] { "   ", "\n", "\t", "\0", " x", "}", ",", " {}", "\r\n" }[random.Next(9)];
                    break;
                case 18 when tensor is not null:
                {
                    JsonObject? other = RandomTensor(out _);
                    string field = random.Next(2) == 0 ? "shape" : "dtype";
                    if (other is not null) tensor[field] = other[field]?.DeepClone();
                    break;
                }
                case 19 when tensor is not null:
                    root[random.Next(2) == 0 ? Metadata : ""] = tensor.DeepClone();
                    break;
                default:
                    root[Metadata] = Raw(random.Next(2) == 0 ? "null" : "{}");
                    break;
            }
        }

        private static string Escape(string text, bool escapeFirst) =>
            escapeFirst && text.Length > 0 ? $"\\u{(int)text[0]:x4}{text[1..]}" : text;

        public byte[] Assemble()
        {
            string json = root.ToJsonString(Serializer);
            foreach (var (marker, raw) in _raw) json = json.Replace(marker, raw, StringComparison.Ordinal);
            byte[] header = Encoding.UTF8.GetBytes(json + _padding);
            if (_headerBytePatch is not null)
            {
                // Inside a string: right after a random quote.
                int[] quotes = Enumerable.Range(0, header.Length).Where(i => header[i] == (byte)'"').ToArray();
                int at = quotes.Length == 0 ? header.Length / 2 : quotes[random.Next(quotes.Length)] + 1;
                header = [.. header[..at], .. _headerBytePatch, .. header[at..]];
            }
            var bytes = new byte[8 + header.Length + _data.Length];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, _lengthLie ?? (ulong)header.Length);
            header.CopyTo(bytes, 8);
            _data.CopyTo(bytes, 8 + header.Length);
            return bytes;
        }
    }
}
