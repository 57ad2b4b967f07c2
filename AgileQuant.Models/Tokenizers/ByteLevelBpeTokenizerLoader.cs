using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Builds GPT-2 style byte-level BPE tokenizers (GPT-2, OPT, GPT-NeoX, BLOOM-style vocabularies) as
/// <see cref="BpeTokenizer"/> with <see cref="BpeOptions.ByteLevel"/> and the GPT-2 pre-tokenization regex,
/// from <c>vocab.json</c> + <c>merges.txt</c>, from a Hugging Face <c>tokenizer.json</c>, or from a token
/// list and merge list (GGUF <c>tokenizer.ggml.*</c>).
/// </summary>
public static partial class ByteLevelBpeTokenizerLoader
{
    /// <summary>
    /// The GPT-2 pre-tokenization pattern (openai/gpt-2 src/encoder.py; Hugging Face ByteLevel pre-tokenizer):
    /// contractions, optional space + letters, optional space + digits, optional space + other symbols,
    /// whitespace not followed by non-space, remaining whitespace.
    /// </summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const long MaxJsonBytes = 1L << 30;

    [GeneratedRegex(Gpt2Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex Gpt2Regex();

    /// <summary>
    /// Loads <c>vocab.json</c> (object token → id) and <c>merges.txt</c> (one "left right" pair per line,
    /// an optional <c>#version</c> first line), as shipped with OPT and GPT-2 checkpoints.
    /// </summary>
    /// <param name="vocabJsonPath">The vocab.json file.</param>
    /// <param name="mergesPath">The merges.txt file.</param>
    /// <param name="beginningOfSentenceToken">Token prepended to every encoding (OPT prepends <c>&lt;/s&gt;</c>), or null.</param>
    /// <exception cref="ModelFormatException">A file is missing or malformed, or there are no merges.</exception>
    public static BpeTokenizer FromVocabAndMerges(string vocabJsonPath, string mergesPath, string? beginningOfSentenceToken = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(vocabJsonPath);
        ArgumentException.ThrowIfNullOrEmpty(mergesPath);
        Dictionary<string, int> vocabulary;
        using (JsonDocument doc = ParseJson(vocabJsonPath))
            vocabulary = ReadVocabularyObject(vocabJsonPath, doc.RootElement, "the top-level object");
        var merges = new List<string>();
        int lineNumber = 0;
        foreach (string line in ReadLines(mergesPath))
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            merges.Add(CheckMerge(mergesPath, line, $"line {lineNumber}"));
        }
        return Create(mergesPath, vocabulary, merges, specialTokens: null, beginningOfSentenceToken);
    }

    /// <summary>
    /// Loads a Hugging Face <c>tokenizer.json</c> whose <c>model</c> is BPE: <c>model.vocab</c> (token → id),
    /// <c>model.merges</c> (either "left right" strings or ["left", "right"] pairs) and the special entries of
    /// <c>added_tokens</c>.
    /// </summary>
    /// <param name="tokenizerJsonPath">The tokenizer.json file.</param>
    /// <param name="beginningOfSentenceToken">Token prepended to every encoding, or null.</param>
    /// <exception cref="ModelFormatException">The file is missing or malformed, is not BPE, or has no merges.</exception>
    public static BpeTokenizer FromTokenizerJson(string tokenizerJsonPath, string? beginningOfSentenceToken = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        using JsonDocument doc = ParseJson(tokenizerJsonPath);
        string path = tokenizerJsonPath;
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, null, "expected an object with a 'model' object, found none");
        if (model.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() != "BPE")
            throw new ModelFormatException(path, null, $"expected model.type 'BPE', found '{type.GetString()}'");
        RefuseUnsupportedOptions(path, doc.RootElement, model);
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement))
            throw new ModelFormatException(path, null, "expected model.vocab, found none");
        Dictionary<string, int> vocabulary = ReadVocabularyObject(path, vocabElement, "model.vocab");
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
                    throw new ModelFormatException(path, null, $"{where}: expected byte-level tokens without spaces, found [\"{left}\", \"{right}\"]");
                merges.Add(CheckMerge(path, left + " " + right, where));
            }
            else
            {
                throw new ModelFormatException(path, null, $"{where}: expected \"left right\" or [\"left\", \"right\"], found {merge.ValueKind}");
            }
        }

        var specialTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        if (doc.RootElement.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement token in added.EnumerateArray())
            {
                if (token.ValueKind == JsonValueKind.Object &&
                    token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String &&
                    token.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out int tokenId) && tokenId >= 0 &&
                    token.TryGetProperty("special", out JsonElement special) && special.ValueKind == JsonValueKind.True)
                {
                    specialTokens[content.GetString()!] = tokenId;
                    vocabulary.TryAdd(content.GetString()!, tokenId);
                }
            }
        }
        IReadOnlyDictionary<string, int>? specialOrNull = specialTokens.Count > 0 ? specialTokens : null;
        PreTokenizer preTokenizer = ReadPreTokenizer(path, doc.RootElement, specialOrNull);
        return CreateCore(path, vocabulary, merges, specialOrNull, beginningOfSentenceToken, preTokenizer);
    }

    /// <summary>Refuses tokenizer.json features this byte-level BPE does not implement, rather than encode differently.</summary>
    private static void RefuseUnsupportedOptions(string path, JsonElement root, JsonElement model)
    {
        if (root.TryGetProperty("normalizer", out JsonElement normalizer) && normalizer.ValueKind != JsonValueKind.Null)
            throw new ModelFormatException(path, null, "expected no normalizer, found one (not supported)");
        if (model.TryGetProperty("byte_fallback", out JsonElement byteFallback) && byteFallback.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, null, "expected a byte-level BPE, found model.byte_fallback = true (a SentencePiece-style BPE, not supported here)");
        foreach (string option in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(option, out JsonElement value) && value.ValueKind is not JsonValueKind.Null and not JsonValueKind.Undefined &&
                !(value.ValueKind == JsonValueKind.String && value.GetString()!.Length == 0))
                throw new ModelFormatException(path, null, $"expected model.{option} to be null, found {value} (not supported)");
    }

    /// <summary>
    /// The pre-tokenizer a tokenizer.json asks for: <c>ByteLevel</c> with its regex → the GPT-2 pattern;
    /// <c>Split</c> (Isolated, not inverted) followed by <c>ByteLevel</c> without regex → <see cref="IsolatedSplitPreTokenizer"/>.
    /// Anything else is refused.
    /// </summary>
    private static PreTokenizer ReadPreTokenizer(string path, JsonElement root, IReadOnlyDictionary<string, int>? specialTokens)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement element) || element.ValueKind == JsonValueKind.Null)
            return new RegexPreTokenizer(Gpt2Regex(), specialTokens);
        List<JsonElement> steps = TypeOf(element) == "Sequence" && element.TryGetProperty("pretokenizers", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToList()
            : [element];
        string? splitPattern = null;
        bool byteLevelRegex = false, byteLevel = false;
        foreach (JsonElement step in steps)
        {
            switch (TypeOf(step))
            {
                case "ByteLevel":
                    byteLevel = true;
                    if (step.TryGetProperty("add_prefix_space", out JsonElement prefix) && prefix.ValueKind == JsonValueKind.True)
                        throw new ModelFormatException(path, null, "expected pre_tokenizer ByteLevel.add_prefix_space = false, found true (not supported)");
                    byteLevelRegex = !step.TryGetProperty("use_regex", out JsonElement useRegex) || useRegex.ValueKind != JsonValueKind.False;
                    break;
                case "Split" when splitPattern is null:
                    splitPattern = ReadSplitPattern(path, step);
                    break;
                default:
                    throw new ModelFormatException(path, null, $"expected pre_tokenizer steps ByteLevel and at most one Split, found '{TypeOf(step)}' (not supported)");
            }
        }
        if (!byteLevel)
            throw new ModelFormatException(path, null, "expected a ByteLevel pre_tokenizer step, found none");
        if (splitPattern is null) return new RegexPreTokenizer(Gpt2Regex(), specialTokens);
        if (byteLevelRegex)
            throw new ModelFormatException(path, null, "expected ByteLevel.use_regex = false after a Split, found true (two regex stages are not supported)");
        try
        {
            return new IsolatedSplitPreTokenizer(new Regex(splitPattern, RegexOptions.CultureInvariant), specialTokens);
        }
        catch (ArgumentException e)
        {
            throw new ModelFormatException(path, null, $"expected a Split pattern .NET can compile, found '{splitPattern}': {e.Message}", e);
        }
    }

    private static string? TypeOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String
            ? type.GetString() : null;

    private static string ReadSplitPattern(string path, JsonElement split)
    {
        if (!split.TryGetProperty("behavior", out JsonElement behavior) || behavior.ValueKind != JsonValueKind.String ||
            !string.Equals(behavior.GetString(), "Isolated", StringComparison.OrdinalIgnoreCase))
            throw new ModelFormatException(path, null, $"expected Split.behavior 'Isolated', found {(split.TryGetProperty("behavior", out JsonElement b) ? b.ToString() : "none")} (not supported)");
        if (split.TryGetProperty("invert", out JsonElement invert) && invert.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, null, "expected Split.invert = false, found true (not supported)");
        if (split.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object)
        {
            if (pattern.TryGetProperty("String", out JsonElement literal) && literal.ValueKind == JsonValueKind.String)
                return Regex.Escape(literal.GetString()!);
            if (pattern.TryGetProperty("Regex", out JsonElement regex) && regex.ValueKind == JsonValueKind.String)
                return IsolatedSplitPreTokenizer.TranslateOnigurumaPattern(regex.GetString()!)
                    ?? throw new ModelFormatException(path, null, $"expected a Split regex without nested negated classes, found '{regex.GetString()}' (not supported)");
        }
        throw new ModelFormatException(path, null, "expected Split.pattern {\"Regex\": ...} or {\"String\": ...}, found neither");
    }

    /// <summary>
    /// Builds the tokenizer from a vocabulary (token → id, tokens in the byte-level alphabet where a space is
    /// <c>Ġ</c>) and merges in priority order ("left right").
    /// </summary>
    /// <param name="sourcePath">The file the data came from, for error messages.</param>
    /// <param name="vocabulary">Token → id.</param>
    /// <param name="merges">Merges, highest priority first.</param>
    /// <param name="specialTokens">Tokens matched verbatim in the input before pre-tokenization, or null.</param>
    /// <param name="beginningOfSentenceToken">Token prepended to every encoding, or null.</param>
    /// <exception cref="ModelFormatException">There are no merges, a merge is malformed, repeated or names an unknown token.</exception>
    public static BpeTokenizer Create(string sourcePath, IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges,
        IReadOnlyDictionary<string, int>? specialTokens, string? beginningOfSentenceToken) =>
        CreateCore(sourcePath, vocabulary, merges, specialTokens, beginningOfSentenceToken, new RegexPreTokenizer(Gpt2Regex(), specialTokens));

    private static BpeTokenizer CreateCore(string sourcePath, IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges,
        IReadOnlyDictionary<string, int>? specialTokens, string? beginningOfSentenceToken, PreTokenizer preTokenizer)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(merges);
        if (merges.Count == 0)
            throw new ModelFormatException(sourcePath, null, "expected at least one BPE merge, found none");
        if (vocabulary.Count == 0)
            throw new ModelFormatException(sourcePath, null, "expected a non-empty vocabulary, found none");
        var firstIndex = new Dictionary<string, int>(merges.Count, StringComparer.Ordinal);
        for (int i = 0; i < merges.Count; i++)
        {
            string merge = CheckMerge(sourcePath, merges[i], $"merge {i}");
            // BpeTokenizer.Create would fail on a repeated pair with a bare ArgumentException.
            if (!firstIndex.TryAdd(merge, i))
                throw new ModelFormatException(sourcePath, null, $"merge {i}: expected each merge once, found \"{merge}\" again (first at merge {firstIndex[merge]})");
            int space = merge.IndexOf(' ');
            string left = merge[..space], right = merge[(space + 1)..];
            if (!vocabulary.ContainsKey(left) || !vocabulary.ContainsKey(right) || !vocabulary.ContainsKey(left + right))
                throw new ModelFormatException(sourcePath, null, $"merge {i}: expected '{left}', '{right}' and their concatenation in the vocabulary, found one missing");
        }
        if (beginningOfSentenceToken is not null && !vocabulary.ContainsKey(beginningOfSentenceToken))
            throw new ModelFormatException(sourcePath, null, $"expected the BOS token '{beginningOfSentenceToken}' in the vocabulary, found none");

        var options = new BpeOptions(vocabulary)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = preTokenizer,
            SpecialTokens = specialTokens,
            BeginningOfSentenceToken = beginningOfSentenceToken,
        };
        try
        {
            return BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException(sourcePath, null, "could not build the BPE tokenizer: " + e.Message, e);
        }
    }

    private static string CheckMerge(string path, string merge, string where)
    {
        int space = merge.IndexOf(' ');
        if (space <= 0 || space == merge.Length - 1 || merge.IndexOf(' ', space + 1) >= 0)
            throw new ModelFormatException(path, null, $"{where}: expected \"left right\" (two tokens, one space), found \"{merge}\"");
        return merge;
    }

    private static Dictionary<string, int> ReadVocabularyObject(string path, JsonElement element, string where)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, null, $"expected {where} to be an object of token → id, found {element.ValueKind}");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        var seenIds = new HashSet<int>();
        foreach (JsonProperty entry in element.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                throw new ModelFormatException(path, null, $"{where}: token '{entry.Name}': expected a non-negative int32 id, found {entry.Value}");
            if (!seenIds.Add(id))
                throw new ModelFormatException(path, null, $"{where}: token '{entry.Name}': expected unique ids, found {id} twice");
            if (!vocabulary.TryAdd(entry.Name, id))
                throw new ModelFormatException(path, null, $"{where}: expected unique tokens, found '{entry.Name}' twice");
        }
        return vocabulary;
    }

    internal static JsonDocument ParseJson(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a JSON file, found no file");
        try
        {
            if (new FileInfo(path).Length > MaxJsonBytes)
                throw new ModelFormatException(path, null, $"expected at most {MaxJsonBytes} bytes of JSON, found more");
            using FileStream stream = File.OpenRead(path);
            JsonDocument doc = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 64 });
            try
            {
                // Names and strings are decoded lazily (invalid UTF-8 would surface later as InvalidOperationException).
                Architectures.HfConfig.RequireValidText(path, doc.RootElement);
            }
            catch
            {
                doc.Dispose();
                throw;
            }
            return doc;
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, null, "expected valid JSON: " + e.Message, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, null, "could not read the file: " + e.Message, e);
        }
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a merges file, found no file");
        try
        {
            return File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, null, "could not read the file: " + e.Message, e);
        }
    }
}
