using System.Text.Json;

namespace AgileQuant.Models.Tokenizers;

/// <summary>Reads the parts of a Hugging Face <c>tokenizer.json</c> that every tokenizer model shares.</summary>
internal static class TokenizerJson
{
    /// <summary>The <c>type</c> of a JSON object, or null.</summary>
    public static string? TypeOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String
            ? type.GetString() : null;

    /// <summary>The <c>model</c> object.</summary>
    public static JsonElement Model(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, null, "expected an object with a 'model' object, found none");
        return model;
    }

    /// <summary><c>model.merges</c> as "left right" strings, from either spelling ("left right" or ["left", "right"]).</summary>
    public static List<string> Merges(string path, JsonElement model)
    {
        if (!model.TryGetProperty("merges", out JsonElement mergesElement) || mergesElement.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, null, "expected model.merges to be an array, found none");
        var merges = new List<string>(mergesElement.GetArrayLength());
        int index = 0;
        foreach (JsonElement merge in mergesElement.EnumerateArray())
        {
            string where = $"model.merges[{index++}]";
            if (merge.ValueKind == JsonValueKind.String)
            {
                merges.Add(CheckMerge(path, merge.GetString()!, where));
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2 &&
                     merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                string left = merge[0].GetString()!, right = merge[1].GetString()!;
                if (left.Contains(' ') || right.Contains(' '))
                    throw new ModelFormatException(path, null, $"{where}: expected tokens without spaces, found [\"{left}\", \"{right}\"]");
                merges.Add(CheckMerge(path, left + " " + right, where));
            }
            else
            {
                throw new ModelFormatException(path, null, $"{where}: expected \"left right\" or [\"left\", \"right\"], found {merge.ValueKind}");
            }
        }
        return merges;
    }

    /// <summary>A merge with exactly one space between two non-empty tokens.</summary>
    public static string CheckMerge(string path, string merge, string where)
    {
        int space = merge.IndexOf(' ');
        if (space <= 0 || space == merge.Length - 1 || merge.IndexOf(' ', space + 1) >= 0)
            throw new ModelFormatException(path, null, $"{where}: expected \"left right\" (two tokens, one space), found \"{merge}\"");
        return merge;
    }

    /// <summary>
    /// The <c>added_tokens</c> with a content and a non-negative integer id (others are skipped): special ones are
    /// matched in text only when asked, the others always. Matched on the text as given (<c>normalized</c> is not
    /// applied; it matters only for tokens a normalizer would rewrite).
    /// </summary>
    public static List<AddedToken> AddedTokens(string path, JsonElement root)
    {
        var added = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind != JsonValueKind.Array) return added;
        foreach (JsonElement token in list.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object ||
                !token.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String || content.GetString()!.Length == 0 ||
                !token.TryGetProperty("id", out JsonElement id) || id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int tokenId) || tokenId < 0)
                continue;
            if (Flag(token, "single_word"))
                throw new ModelFormatException(path, null, $"added token '{content.GetString()}': expected single_word = false, found true (not supported)");
            added.Add(new AddedToken(content.GetString()!, tokenId, Flag(token, "special"), Flag(token, "lstrip"), Flag(token, "rstrip")));
        }
        return added;
    }

    private static bool Flag(JsonElement token, string name) => token.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.True;

    /// <summary>The normalizer steps (a Sequence flattened; none for a null normalizer).</summary>
    public static List<JsonElement> NormalizerSteps(JsonElement root)
    {
        var steps = new List<JsonElement>();
        if (root.TryGetProperty("normalizer", out JsonElement normalizer)) Flatten(normalizer, "normalizers", steps);
        return steps;
    }

    /// <summary>The pre-tokenizer steps (a Sequence flattened; none for a null pre-tokenizer).</summary>
    public static List<JsonElement> PreTokenizerSteps(JsonElement root)
    {
        var steps = new List<JsonElement>();
        if (root.TryGetProperty("pre_tokenizer", out JsonElement preTokenizer)) Flatten(preTokenizer, "pretokenizers", steps);
        return steps;
    }

    /// <summary>The decoder steps (a Sequence flattened; none for a null decoder).</summary>
    public static List<JsonElement> DecoderSteps(JsonElement root)
    {
        var steps = new List<JsonElement>();
        if (root.TryGetProperty("decoder", out JsonElement decoder))
        {
            if (TypeOf(decoder) == "Sequence" && decoder.TryGetProperty("decoders", out JsonElement list) && list.ValueKind == JsonValueKind.Array) steps.AddRange(list.EnumerateArray());
            else if (decoder.ValueKind == JsonValueKind.Object) steps.Add(decoder);
        }
        return steps;
    }

    private static void Flatten(JsonElement element, string listName, List<JsonElement> steps)
    {
        if (element.ValueKind != JsonValueKind.Object) return;
        if (TypeOf(element) == "Sequence" && element.TryGetProperty(listName, out JsonElement list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement step in list.EnumerateArray()) Flatten(step, listName, steps);
            return;
        }
        steps.Add(element);
    }

    /// <summary>The normalizer as one word: null for none (or an empty Sequence), else the step types joined by '+'.</summary>
    public static string? Normalizer(string path, JsonElement root)
    {
        List<JsonElement> steps = NormalizerSteps(root);
        return steps.Count == 0 ? null : string.Join('+', steps.Select(s => TypeOf(s) ?? s.ValueKind.ToString()));
    }

    /// <summary>The special token a TemplateProcessing post-processor puts before a single sequence, if any.</summary>
    public static string? TemplateBos(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("post_processor", out JsonElement processor))
            return null;
        IEnumerable<JsonElement> candidates = processor.ValueKind == JsonValueKind.Object && processor.TryGetProperty("processors", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToArray()
            : [processor];
        foreach (JsonElement candidate in candidates)
        {
            if (candidate.ValueKind == JsonValueKind.Object &&
                candidate.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "TemplateProcessing" &&
                candidate.TryGetProperty("single", out JsonElement single) && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0 &&
                single[0].ValueKind == JsonValueKind.Object && single[0].TryGetProperty("SpecialToken", out JsonElement special) &&
                special.ValueKind == JsonValueKind.Object && special.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String)
                return id.GetString();
        }
        return null;
    }
}
