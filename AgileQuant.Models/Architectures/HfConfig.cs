using System.Text.Json;

namespace AgileQuant.Models.Architectures;

/// <summary>A Hugging Face <c>config.json</c>, with typed, validated field access that names the file and key on error.</summary>
public sealed class HfConfig
{
    private readonly JsonElement _root;
    private readonly string _keyPrefix; // "" at the top level; "rope_scaling." in that section

    /// <summary>Path of the config file.</summary>
    public string FilePath { get; }

    /// <summary>The <c>model_type</c> field (of the file, also in a <see cref="Section"/>).</summary>
    public string ModelType { get; }

    private HfConfig(string path, JsonElement root)
    {
        FilePath = path;
        _root = root;
        _keyPrefix = "";
        ModelType = GetString("model_type");
    }

    private HfConfig(HfConfig parent, string key, JsonElement section)
    {
        FilePath = parent.FilePath;
        _root = section;
        _keyPrefix = parent._keyPrefix + key + ".";
        ModelType = parent.ModelType;
    }

    /// <summary>Most bytes of a config.json.</summary>
    internal const long MaxConfigBytes = 4_000_000;

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    public static HfConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "config.json not found: a Hugging Face model directory needs one");
        byte[] json = GuardedFile.ReadAllBytes(path, MaxConfigBytes);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, null, $"expected a JSON object, found {doc.RootElement.ValueKind}");
            RequireValidText(path, doc.RootElement);
            return new HfConfig(path, doc.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, null, "invalid JSON: " + e.Message, e);
        }
    }

    // JsonDocument checks the text of names and strings only when they are read (invalid UTF-8 or a lone surrogate
    // escape then throws InvalidOperationException), so every one is decoded once here.
    internal static void RequireValidText(string path, JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (JsonProperty property in element.EnumerateObject())
                    {
                        _ = property.Name;
                        RequireValidText(path, property.Value);
                    }
                    break;
                case JsonValueKind.Array:
                    foreach (JsonElement item in element.EnumerateArray()) RequireValidText(path, item);
                    break;
                case JsonValueKind.String:
                    _ = element.GetString();
                    break;
            }
        }
        catch (InvalidOperationException e)
        {
            throw new ModelFormatException(path, null, $"expected valid UTF-8 text in every name and string, found invalid text ({e.Message})", e);
        }
    }

    /// <summary>The keys of this file that the values <see cref="ConfigValueChecks"/> checks came from (the first present of each family's spellings).</summary>
    internal ConfigKeys ValueKeys()
    {
        string First(string fallback, params string[] keys) => keys.FirstOrDefault(Has) ?? fallback;
        return new ConfigKeys(
            First("the norm epsilon", "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"),
            First("the RoPE base", "rope_theta"),
            First("the context length", "max_position_embeddings", "seq_length", "n_positions"),
            "the family's learned-position offset");
    }

    /// <summary>Whether <paramref name="key"/> is present and not null.</summary>
    public bool Has(string key) => _root.TryGetProperty(key, out JsonElement v) && v.ValueKind != JsonValueKind.Null;

    /// <summary>Whether <paramref name="key"/> is present with the value null (Gemma's soft-caps: null = none, absent = the default).</summary>
    public bool IsNull(string key) => _root.TryGetProperty(key, out JsonElement v) && v.ValueKind == JsonValueKind.Null;

    /// <summary>A required string field.</summary>
    public string GetString(string key)
    {
        JsonElement v = Required(key);
        if (v.ValueKind != JsonValueKind.String) throw Bad(key, "a string", v);
        return v.GetString()!;
    }

    /// <summary>A required positive integer field (the first of <paramref name="keys"/> present).</summary>
    public int GetInt(params string[] keys)
    {
        foreach (string key in keys)
            if (Has(key)) return ReadInt(key, _root.GetProperty(key));
        throw new ModelFormatException(FilePath, null, $"missing required field '{string.Join("' or '", keys.Select(KeyName))}'");
    }

    /// <summary>An optional integer field.</summary>
    public int GetInt(string key, int fallback) => Has(key) ? ReadInt(key, _root.GetProperty(key)) : fallback;

    /// <summary>An optional number field.</summary>
    public float GetFloat(string key, float fallback)
    {
        if (!Has(key)) return fallback;
        JsonElement v = _root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d)) throw Bad(key, "a finite number", v);
        return (float)d;
    }

    /// <summary>An optional boolean field.</summary>
    public bool GetBool(string key, bool fallback)
    {
        if (!Has(key)) return fallback;
        JsonElement v = _root.GetProperty(key);
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(key, "true or false", v),
        };
    }

    /// <summary>
    /// The object field <paramref name="key"/> (e.g. <c>rope_scaling</c>) with the same typed access, its keys named
    /// <c>key.field</c> in messages; null when absent or null.
    /// </summary>
    public HfConfig? Section(string key)
    {
        if (!Has(key)) return null;
        JsonElement v = _root.GetProperty(key);
        return v.ValueKind == JsonValueKind.Object ? new HfConfig(this, key, v) : throw Bad(key, "an object", v);
    }

    /// <summary>
    /// An optional token-id field that may also be a list (Llama 3's <c>eos_token_id</c>): the integer, or the list's first
    /// one; <paramref name="fallback"/> when absent or null.
    /// </summary>
    public int GetFirstInt(string key, int fallback)
    {
        if (!Has(key)) return fallback;
        JsonElement v = _root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Array) return ReadInt(key, v);
        if (v.GetArrayLength() == 0) throw Bad(key, "an integer or a non-empty list of integers", v);
        return ReadInt(key, v[0]);
    }

    /// <summary>An optional list of strings (e.g. Gemma 3's <c>layer_types</c>); null when absent or null.</summary>
    public IReadOnlyList<string>? GetStringList(string key)
    {
        if (!Has(key)) return null;
        JsonElement v = _root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String)) throw Bad(key, "a list of strings", v);
        return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }

    /// <summary>The key as messages name it (<c>rope_scaling.factor</c> inside that section).</summary>
    public string KeyName(string key) => _keyPrefix + key;

    /// <summary>An optional string field.</summary>
    public string? GetOptionalString(string key) => Has(key) ? GetString(key) : null;

    /// <summary>Throws unless <paramref name="key"/> is absent/null or equals <paramref name="supported"/>.</summary>
    public void RequireAbsentOrEqual(string key, string supported)
    {
        if (Has(key) && GetString(key) != supported)
            throw new ModelFormatException(FilePath, null, $"'{KeyName(key)}' is '{GetString(key)}', but only '{supported}' is supported");
    }

    /// <summary>Throws unless <paramref name="key"/> is absent or null (e.g. an unsupported rope_scaling).</summary>
    public void RequireAbsent(string key, string why)
    {
        if (Has(key)) throw new ModelFormatException(FilePath, null, $"'{KeyName(key)}' is set ({Truncate(_root.GetProperty(key).GetRawText())}), but {why}");
    }

    private int ReadInt(string key, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i)) throw Bad(key, "an integer", v);
        return i;
    }

    private JsonElement Required(string key) =>
        _root.TryGetProperty(key, out JsonElement v) && v.ValueKind != JsonValueKind.Null
            ? v
            : throw new ModelFormatException(FilePath, null, $"missing required field '{KeyName(key)}'");

    private ModelFormatException Bad(string key, string expected, JsonElement found) =>
        new(FilePath, null, $"field '{KeyName(key)}': expected {expected}, found {found.ValueKind} {Truncate(found.GetRawText())}");

    private static string Truncate(string s) => s.Length > 60 ? s[..60] + "…" : s;
}
