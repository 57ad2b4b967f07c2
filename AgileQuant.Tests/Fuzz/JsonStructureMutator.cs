using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware JSON mutations for config files and indexes: parses the input and, at a random value
/// (or a key listed in <see cref="HotKeys"/>), writes absurd numbers (2^30, 2^31, 2^63, -1, 0, 1e400,
/// fractions), wrong types, null, deep nesting or huge strings; deletes, renames or duplicates keys;
/// swaps values between keys; or splices invalid UTF-8 or a lone surrogate escape into a string.
/// Inputs that do not parse are returned unchanged (stack it with <see cref="ByteMutator"/> for those).
/// </summary>
public sealed class JsonStructureMutator : IFuzzMutator
{
    private static readonly JsonSerializerOptions Serializer = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly string[] Absurd = ["0", "-1", "1", "2", "3", "1073741824", "2147483647", "2147483648", "-2147483648",
        "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "1e400", "-1e400",
        "1.5", "0.0", "-0", "1e-400", "65536", "46341", "1" + new string('0', 300), "\"8\"", "\"\"", "true", "false", "null", "[]", "{}",
        "[1,2]", "{\"a\":1}", "\"llama\"", "\"opt\"", "\"bloom\"", "\"gelu\"", "\"model.safetensors\"", "\"../model.safetensors\""];
    private static readonly byte[][] InvalidUtf8 = [[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xC0, 0xAF]];

    /// <summary>Creates the mutator; <paramref name="hotKeys"/> are top-level keys most edits target (e.g. the size fields of a config).</summary>
    public JsonStructureMutator(params string[] hotKeys) => HotKeys = hotKeys;

    /// <summary>Keys most edits target when present.</summary>
    public IReadOnlyList<string> HotKeys { get; }

    /// <inheritdoc/>
    public string Name => "json-structure";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        try
        {
            return JsonNode.Parse(input) is JsonNode root ? Mutate(root, random) : input;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            // JsonNode parses lazily: duplicate keys or a lone surrogate left by an earlier mutation surface here.
            return input;
        }
    }

    private byte[] Mutate(JsonNode root, Random random)
    {
        var raw = new Dictionary<string, string>();
        JsonNode RawValue(string json)
        {
            string marker = $"@@RAW{raw.Count}@@";
            raw[$"\"{marker}\""] = json;
            return JsonValue.Create(marker);
        }

        (JsonObject? parent, string key) = PickProperty(root, random);
        switch (random.Next(12))
        {
            case 0 or 1 or 2 when parent is not null:
                parent[key] = RawValue(Absurd[random.Next(Absurd.Length)]);
                break;
            case 3 when parent is not null:
                parent.Remove(key);
                break;
            case 4 when parent is not null:
            {
                int depth = random.Next(4) == 0 ? random.Next(60, 3000) : random.Next(1, 10);
                parent[key] = RawValue(new string('[', depth) + "1" + new string(']', depth));
                break;
            }
            case 5 when parent is not null:
                parent[key] = new string('x', random.Next(2) == 0 ? random.Next(1, 100) : random.Next(1 << 10, 1 << 18));
                break;
            case 6 when parent is not null:
            {
                // Duplicate key (the second spelled with an escape half the time).
                string spelled = random.Next(2) == 0 || key.Length == 0 ? key : $"\\u{(int)key[0]:x4}{key[1..]}";
                string marker = $"@@PROP{raw.Count}@@";
                parent[marker] = 0;
                raw[$"\"{marker}\":0"] = $"\"{spelled}\":{Absurd[random.Next(Absurd.Length)]}";
                break;
            }
            case 7 when parent is not null && parent.Count > 1:
            {
                // Swap two values (a string where a number belongs, an object where a string belongs...).
                string other = parent.ElementAt(random.Next(parent.Count)).Key;
                (JsonNode? a, JsonNode? b) = (parent[key]?.DeepClone(), parent[other]?.DeepClone());
                parent[key] = b;
                parent[other] = a;
                break;
            }
            case 8 when parent is not null:
            {
                JsonNode? value = parent[key]?.DeepClone();
                parent.Remove(key);
                parent[key.Length > 0 && random.Next(2) == 0 ? key[..^1] : key + "_"] = value;
                break;
            }
            case 9 when parent is not null && parent[key] is JsonValue number0 && number0.TryGetValue(out long number):
                parent[key] = RawValue(random.Next(4) switch
                {
                    0 => (number * 2).ToString(),
                    1 => (number - 1).ToString(),
                    2 => (-number).ToString(),
                    _ => (number + 1).ToString(),
                });
                break;
            case 10:
                return SpliceIntoString(Encoding.UTF8.GetBytes(Serialize(root, raw)), random);
            default:
                if (root is JsonObject top)
                    for (int i = random.Next(1, random.Next(8) == 0 ? 3000 : 20); i > 0; i--) top[$"extra_{i}"] = i;
                break;
        }
        return Encoding.UTF8.GetBytes(Serialize(root, raw));
    }

    private (JsonObject? Parent, string Key) PickProperty(JsonNode root, Random random)
    {
        if (root is JsonObject top && HotKeys.Count > 0 && random.Next(3) != 0)
        {
            string hot = HotKeys[random.Next(HotKeys.Count)];
            if (top.ContainsKey(hot) || random.Next(4) == 0) return (top, hot);
        }
        // A random property anywhere: walk down through objects and arrays.
        JsonObject? parent = null;
        string key = "";
        JsonNode? node = root;
        for (int depth = 0; depth < 8 && node is not null; depth++)
        {
            if (node is JsonObject obj && obj.Count > 0)
            {
                (parent, key) = (obj, obj.ElementAt(random.Next(obj.Count)).Key);
                node = obj[key];
            }
            else if (node is JsonArray array && array.Count > 0) node = array[random.Next(array.Count)];
            else break;
            if (random.Next(3) == 0) break;
        }
        return (parent, key);
    }

    private static string Serialize(JsonNode root, Dictionary<string, string> raw)
    {
        string json = root.ToJsonString(Serializer);
        foreach (var (marker, text) in raw) json = json.Replace(marker, text, StringComparison.Ordinal);
        return json;
    }

    // Invalid UTF-8 or a lone surrogate escape right after a random quote.
    private static byte[] SpliceIntoString(byte[] json, Random random)
    {
        int[] quotes = Enumerable.Range(0, json.Length).Where(i => json[i] == (byte)'"').ToArray();
        int at = quotes.Length == 0 ? json.Length / 2 : quotes[random.Next(quotes.Length)] + 1;
        byte[] patch = random.Next(3) == 0 ? Encoding.ASCII.GetBytes(random.Next(2) == 0 ? "\\ud800" : "\\udfff") : InvalidUtf8[random.Next(InvalidUtf8.Length)];
        return [.. json[..at], .. patch, .. json[at..]];
    }
}
