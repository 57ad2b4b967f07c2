using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Builds byte-level BPE tokenizers (GPT-2, OPT, GPT-NeoX, BLOOM, Llama 3, Qwen2, DeepSeek, Falcon, StarCoder, …) as
/// <see cref="BpeTokenizer"/> with <see cref="BpeOptions.ByteLevel"/> and a pre-tokenizer of
/// <see cref="PreTokenizerCatalog"/>, from <c>vocab.json</c> + <c>merges.txt</c> (GPT-2's pre-tokenizer), from a
/// Hugging Face <c>tokenizer.json</c>, or from a token list and merge list (GGUF <c>tokenizer.ggml.*</c>).
/// </summary>
public static class ByteLevelBpeTokenizerLoader
{
    /// <summary>
    /// The GPT-2 pre-tokenization pattern (openai/gpt-2 src/encoder.py; Hugging Face ByteLevel pre-tokenizer):
    /// contractions, optional space + letters, optional space + digits, optional space + other symbols,
    /// whitespace not followed by non-space, remaining whitespace.
    /// </summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const long MaxJsonBytes = 1L << 30;

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
    /// Loads a Hugging Face <c>tokenizer.json</c> whose <c>model</c> is a byte-level BPE: <c>model.vocab</c> (token → id),
    /// <c>model.merges</c> (either "left right" strings or ["left", "right"] pairs), <c>model.ignore_merges</c>, the
    /// <c>added_tokens</c>, an NFC normalizer if any, and the pre-tokenizer: GPT-2's <c>ByteLevel</c> regex, or
    /// <c>Split</c> steps (behavior <c>Isolated</c>) before <c>ByteLevel</c>, read as the <see cref="PreTokenizerCatalog"/>
    /// row with the same regexes where there is one (Llama 3, Qwen2, DeepSeek-V3, BLOOM).
    /// </summary>
    /// <param name="tokenizerJsonPath">The tokenizer.json file.</param>
    /// <param name="beginningOfSentenceToken">Token prepended to every encoding, or null.</param>
    /// <param name="parseSpecialTokens">Whether special added tokens written in the text (<c>&lt;|endoftext|&gt;</c>) encode as
    /// their ids; when false they encode as plain text. Non-special added tokens always encode as their ids.</param>
    /// <returns>A <see cref="BpeTokenizer"/>, or an <see cref="IgnoreMergesBpeTokenizer"/> when <c>model.ignore_merges</c> is true.</returns>
    /// <exception cref="ModelFormatException">The file is missing or malformed, is not a byte-level BPE, or has no merges.</exception>
    public static Tokenizer FromTokenizerJson(string tokenizerJsonPath, string? beginningOfSentenceToken = null, bool parseSpecialTokens = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        using JsonDocument doc = ParseJson(tokenizerJsonPath);
        return FromTokenizerJson(tokenizerJsonPath, doc.RootElement, beginningOfSentenceToken, parseSpecialTokens);
    }

    /// <summary>As <see cref="FromTokenizerJson(string, string?, bool)"/>, from the parsed file.</summary>
    internal static Tokenizer FromTokenizerJson(string path, JsonElement root, string? beginningOfSentenceToken, bool parseSpecialTokens)
    {
        JsonElement model = TokenizerJson.Model(path, root);
        if (model.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() != "BPE")
            throw new ModelFormatException(path, null, $"expected model.type 'BPE', found '{type.GetString()}'");
        RefuseUnsupportedOptions(path, model);
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement))
            throw new ModelFormatException(path, null, "expected model.vocab, found none");
        Dictionary<string, int> vocabulary = ReadVocabularyObject(path, vocabElement, "model.vocab");
        List<string> merges = TokenizerJson.Merges(path, model);
        List<AddedToken> added = TokenizerJson.AddedTokens(path, root);
        foreach (AddedToken token in added) vocabulary.TryAdd(token.Content, token.Id);
        Normalizer? normalizer = TokenizerJson.Normalizer(path, root) switch
        {
            null => null,
            "NFC" => new NfcNormalizer(),
            string other => throw new ModelFormatException(path, null, $"expected no normalizer or NFC for a byte-level BPE, found {other} (not supported)"),
        };
        PreTokenizerDescription preTokenizer = ReadPreTokenizer(path, root);
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement ignore) && ignore.ValueKind == JsonValueKind.True;
        return CreateByteLevel(path, vocabulary, merges, added, parseSpecialTokens, preTokenizer, ignoreMerges, normalizer, beginningOfSentenceToken);
    }

    /// <summary>Refuses tokenizer.json model features this byte-level BPE does not implement, rather than encode differently.</summary>
    private static void RefuseUnsupportedOptions(string path, JsonElement model)
    {
        if (model.TryGetProperty("byte_fallback", out JsonElement byteFallback) && byteFallback.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, null, "expected a byte-level BPE, found model.byte_fallback = true (a SentencePiece-style BPE, not supported here)");
        foreach (string option in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(option, out JsonElement value) && value.ValueKind is not JsonValueKind.Null and not JsonValueKind.Undefined &&
                !(value.ValueKind == JsonValueKind.String && value.GetString()!.Length == 0))
                throw new ModelFormatException(path, null, $"expected model.{option} to be null, found {value} (not supported)");
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind is not JsonValueKind.Null and not JsonValueKind.Undefined)
            throw new ModelFormatException(path, null, $"expected model.dropout to be null, found {dropout} (not supported)");
    }

    /// <summary>
    /// The pre-tokenizer a tokenizer.json asks for: none or <c>ByteLevel</c> with its regex → GPT-2's row;
    /// <c>Split</c> steps (Isolated, not inverted) then <c>ByteLevel</c> → the catalog row with those regexes, else
    /// those regexes compiled here (GPT-2's regex last when <c>ByteLevel</c> keeps its own). Anything else is refused.
    /// </summary>
    internal static PreTokenizerDescription ReadPreTokenizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement element) || element.ValueKind == JsonValueKind.Null)
            return PreTokenizerCatalog.Gpt2;
        List<JsonElement> steps = TypeOf(element) == "Sequence" && element.TryGetProperty("pretokenizers", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToList()
            : [element];
        var patterns = new List<string>();
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
                case "Split" when !byteLevel:
                    patterns.Add(ReadSplitPattern(path, step));
                    break;
                default:
                    throw new ModelFormatException(path, null, $"expected pre_tokenizer steps Split (before ByteLevel) and ByteLevel, found '{TypeOf(step)}' (not supported)");
            }
        }
        if (!byteLevel)
            throw new ModelFormatException(path, null, "expected a ByteLevel pre_tokenizer step, found none");
        if (patterns.Count == 0) return PreTokenizerCatalog.Gpt2;
        if (byteLevelRegex) patterns.Add(Gpt2Pattern);
        if (PreTokenizerCatalog.FindByTokenizerJsonPatterns(patterns) is PreTokenizerDescription row) return row;
        var regexes = new Regex[patterns.Count];
        for (int i = 0; i < patterns.Count; i++)
        {
            try
            {
                regexes[i] = PreTokenizerCatalog.Compile(patterns[i]);
            }
            catch (ArgumentException e)
            {
                throw new ModelFormatException(path, null, $"expected a Split pattern .NET can compile, found '{patterns[i]}': {e.Message}", e);
            }
            catch (RegexMatchTimeoutException e)
            {
                throw new ModelFormatException(path, null,
                    $"expected a Split pattern that matches in bounded time, found '{patterns[i]}', which ran past {e.MatchTimeout.TotalSeconds} s on a {e.Input.Length}-character probe text (catastrophic backtracking)", e);
            }
        }
        return new PreTokenizerDescription("tokenizer.json", [], regexes, [.. patterns]);
    }

    private static string? TypeOf(JsonElement element) => TokenizerJson.TypeOf(element);

    /// <summary>A Split step's regex, rewritten for .NET (a String pattern escaped).</summary>
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
    /// <c>Ġ</c>) and merges in priority order ("left right"), with GPT-2's pre-tokenizer.
    /// </summary>
    /// <param name="sourcePath">The file the data came from, for error messages.</param>
    /// <param name="vocabulary">Token → id.</param>
    /// <param name="merges">Merges, highest priority first.</param>
    /// <param name="specialTokens">Tokens matched verbatim in the input before pre-tokenization, or null.</param>
    /// <param name="beginningOfSentenceToken">Token prepended to every encoding, or null.</param>
    /// <exception cref="ModelFormatException">There are no merges, a merge is malformed, repeated or names an unknown token.</exception>
    public static BpeTokenizer Create(string sourcePath, IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges,
        IReadOnlyDictionary<string, int>? specialTokens, string? beginningOfSentenceToken) =>
        CreateCore(sourcePath, vocabulary, merges, specialTokens, beginningOfSentenceToken, new RegexPreTokenizer(PreTokenizerCatalog.Gpt2.Regexes[0], specialTokens), null);

    /// <summary>
    /// Builds a byte-level BPE with <paramref name="preTokenizer"/>, cutting <paramref name="added"/> tokens out of the
    /// text first (user-defined ones always, special ones when <paramref name="parseSpecialTokens"/>).
    /// </summary>
    internal static Tokenizer CreateByteLevel(string sourcePath, IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges,
        IReadOnlyList<AddedToken> added, bool parseSpecialTokens, PreTokenizerDescription preTokenizer, bool ignoreMerges,
        Normalizer? normalizer, string? beginningOfSentenceToken)
    {
        // Every added token maps to its id and decodes to its text; only those the matcher cuts out are ever whole pieces.
        Dictionary<string, int>? specials = added.Count == 0 ? null : added.DistinctBy(t => t.Content).ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);
        var splitter = new IsolatedSplitPreTokenizer(preTokenizer, AddedTokenMatcher.Create(added, parseSpecialTokens));
        if (!ignoreMerges) return CreateCore(sourcePath, vocabulary, merges, specials, beginningOfSentenceToken, splitter, normalizer);
        BpeTokenizer bpe = CreateCore(sourcePath, vocabulary, merges, specials, null, splitter, normalizer);
        if (beginningOfSentenceToken is not null && !vocabulary.ContainsKey(beginningOfSentenceToken))
            throw new ModelFormatException(sourcePath, null, $"expected the BOS token '{beginningOfSentenceToken}' in the vocabulary, found none");
        return new IgnoreMergesBpeTokenizer(bpe, vocabulary, beginningOfSentenceToken);
    }

    private static BpeTokenizer CreateCore(string sourcePath, IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges,
        IReadOnlyDictionary<string, int>? specialTokens, string? beginningOfSentenceToken, PreTokenizer preTokenizer, Normalizer? normalizer)
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
            Normalizer = normalizer,
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

    private static string CheckMerge(string path, string merge, string where) => TokenizerJson.CheckMerge(path, merge, where);

    internal static Dictionary<string, int> ReadVocabularyObject(string path, JsonElement element, string where)
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
        byte[] json = GuardedFile.ReadAllBytes(path, MaxJsonBytes);
        try
        {
            JsonDocument doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
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
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a merges file, found no file");
        return GuardedFile.ReadAllLines(path, MaxJsonBytes);
    }
}
