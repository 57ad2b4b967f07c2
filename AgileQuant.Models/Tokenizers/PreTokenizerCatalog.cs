using System.Text.RegularExpressions;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// One pre-tokenizer of byte-level BPE vocabularies: the regexes that cut text into pieces before BPE merges, as
/// llama.cpp names them in GGUF <c>tokenizer.ggml.pre</c> and as Hugging Face <c>tokenizer.json</c> spells them.
/// Each regex splits every piece the previous one made; its matches and the text between them are both pieces
/// (llama.cpp's <c>unicode_regex_split</c>, Hugging Face's <c>Split</c> with behavior <c>Isolated</c>).
/// </summary>
/// <remarks>
/// Rows are listed in <see cref="PreTokenizerCatalog"/>; a GGUF file and a tokenizer.json with the same regexes read
/// the same row. The .NET patterns are llama.cpp's (src/llama-vocab.cpp, <c>llm_tokenizer_bpe</c>), with
/// <c>(?i:'s|…)</c> written as explicit case pairs as llama.cpp does, <c>$</c> as <c>\z</c>, and astral ranges handled
/// by <see cref="IsolatedSplitPreTokenizer"/>'s per-code-point matching.
/// </remarks>
public sealed class PreTokenizerDescription
{
    internal PreTokenizerDescription(string name, string[] aliases, Regex[] regexes, string[]? tokenizerJsonPatterns,
        bool ignoreMerges = false, bool addBos = false, (int First, int Last)[]? astralLetterRanges = null)
    {
        Name = name;
        Aliases = aliases;
        Regexes = regexes;
        TokenizerJsonPatterns = tokenizerJsonPatterns ?? [];
        IgnoreMerges = ignoreMerges;
        AddBos = addBos;
        AstralLetterRanges = astralLetterRanges ?? [];
    }

    /// <summary>The <c>tokenizer.ggml.pre</c> value this row is known by (<c>llama-bpe</c>, <c>qwen2</c>, …).</summary>
    public string Name { get; }

    /// <summary>Other <c>tokenizer.ggml.pre</c> values llama.cpp reads as this row.</summary>
    public IReadOnlyList<string> Aliases { get; }

    /// <summary>The regexes, applied in order (each to every piece the previous one made).</summary>
    public IReadOnlyList<Regex> Regexes { get; }

    /// <summary>
    /// The <c>Split</c> regexes of a Hugging Face <c>tokenizer.json</c> that mean this row (empty when the row is GPT-2's
    /// <c>ByteLevel</c> regex or has no tokenizer.json spelling here).
    /// </summary>
    public IReadOnlyList<string> TokenizerJsonPatterns { get; }

    /// <summary>Whether llama.cpp maps a piece found whole in the vocabulary straight to its token (its <c>ignore_merges</c>).</summary>
    public bool IgnoreMerges { get; }

    /// <summary>Whether llama.cpp adds BOS by default for this row when <c>tokenizer.ggml.add_bos_token</c> is absent.</summary>
    public bool AddBos { get; }

    /// <summary>Astral code point ranges the row's letter class lists by name (matched as a cased BMP letter).</summary>
    internal IReadOnlyList<(int First, int Last)> AstralLetterRanges { get; }

    /// <summary>This row's pre-tokenizer on its own (no added tokens cut out).</summary>
    public IsolatedSplitPreTokenizer CreatePreTokenizer() => new(this, null);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>
/// The pre-tokenizers of byte-level BPE vocabularies, one row each (llama.cpp src/llama-vocab.cpp, commit
/// 00ad355, <c>llm_tokenizer_bpe</c> and the <c>tokenizer_pre</c> names in <c>llama_vocab::impl::load</c>). GGUF
/// files find their row by <c>tokenizer.ggml.pre</c>, Hugging Face <c>tokenizer.json</c> files by their Split
/// regexes; an unknown name is refused.
/// </summary>
public static partial class PreTokenizerCatalog
{
    /// <summary>Time one regex may take to find the next piece before encoding is abandoned (no row's pattern backtracks more than linearly).</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromMilliseconds(MatchTimeoutMilliseconds);

    private const int MatchTimeoutMilliseconds = 10_000;
    private const RegexOptions Options = RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture;

    // Contractions, letters with one leading non-letter, digits, symbols with trailing newlines, newlines, spaces.
    private const string Llama3Pattern =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Llama3JsonPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2Pattern =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2JsonPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    // GPT-2's regex without its final \s+ (llama.cpp's list): with the gaps kept as pieces the result is the same.
    private const string Gpt2WordsPattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    private const string PunctuationRunPattern = @"[\p{P}\$\+<=>\^~\|]+";
    private const string ThreeDigitsPattern = "[0-9][0-9][0-9]";
    private const string OneDigitPattern = @"\p{N}";
    private const string DigitRunPattern = @"\p{N}+";
    private const string NewlinePattern = @"[\r\n]";
    // U+4E00-U+9FA5, U+0800-U+4E00, U+AC00-U+D7FF: CJK ideographs, the blocks from Samaritan to CJK, Hangul.
    private const string DeepSeekCjkPattern = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";
    // The cased letters DeepSeek LLM lists by range (its astral ranges are in DeepSeekLlmAstralLetters).
    private const string DeepSeekLlmLettersPattern = @"\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF" +
        @"\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F" +
        @"\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A" +
        @"\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC" +
        @"\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113" +
        @"\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184" +
        @"\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E" +
        @"\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A]+";
    // ASCII and full-width punctuation, U+2018-U+201F quotes, U+3000-U+3002 ideographic space and stops.
    private const string DeepSeekLlmPunctuationPattern = @"\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";
    private const string TrailingSpacesPattern = @"\s+\z";
    private const string DeepSeekV3DigitsPattern = @"\p{N}{1,3}";
    // CJK ideographs U+4E00-U+9FA5, Hiragana U+3040-U+309F, Katakana U+30A0-U+30FF.
    private const string DeepSeekV3CjkPattern = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
    private const string DeepSeekV3WordsPattern =
        @"[!""#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string BloomPattern = @" ?[^(\s|.,!?…。，、।۔،)]+";
    // Mistral's Tekken and GPT-4o: a word is upper-case letters then lower-case ones (or the reverse), marks included.
    private const string TekkenPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt4oPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    [GeneratedRegex(ByteLevelBpeTokenizerLoader.Gpt2Pattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Gpt2Regex();
    [GeneratedRegex(Llama3Pattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Llama3();
    [GeneratedRegex(Qwen2Pattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Qwen2();
    [GeneratedRegex(Gpt2WordsPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Gpt2Words();
    [GeneratedRegex(PunctuationRunPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex PunctuationRun();
    [GeneratedRegex(ThreeDigitsPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex ThreeDigits();
    [GeneratedRegex(OneDigitPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex OneDigit();
    [GeneratedRegex(DigitRunPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DigitRun();
    [GeneratedRegex(NewlinePattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Newline();
    [GeneratedRegex(DeepSeekCjkPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DeepSeekCjk();
    [GeneratedRegex(DeepSeekLlmLettersPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DeepSeekLlmLetters();
    [GeneratedRegex(DeepSeekLlmPunctuationPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DeepSeekLlmPunctuation();
    [GeneratedRegex(TrailingSpacesPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex TrailingSpaces();
    [GeneratedRegex(@"\s?\p{L}+", Options, MatchTimeoutMilliseconds)] private static partial Regex SpaceLetters();
    [GeneratedRegex(@"\s?\p{P}+", Options, MatchTimeoutMilliseconds)] private static partial Regex SpacePunctuation();
    [GeneratedRegex(DeepSeekV3DigitsPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex UpToThreeDigits();
    [GeneratedRegex(DeepSeekV3CjkPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DeepSeekV3Cjk();
    [GeneratedRegex(DeepSeekV3WordsPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex DeepSeekV3Words();
    [GeneratedRegex(BloomPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Bloom();
    [GeneratedRegex(TekkenPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Tekken();
    [GeneratedRegex(Gpt4oPattern, Options, MatchTimeoutMilliseconds)] private static partial Regex Gpt4o();

    // Astral cased letters of DeepSeek LLM's letter class: Deseret, Osage, Old Hungarian, Warang Citi, Adlam.
    private static readonly (int, int)[] DeepSeekLlmAstralLetters =
        [(0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)];

    /// <summary>The row used for a byte-level BPE that names no pre-tokenizer: GPT-2's regex (Hugging Face <c>ByteLevel</c> with its regex).</summary>
    public static PreTokenizerDescription Gpt2 { get; } = new("gpt-2",
        ["mpt", "phi-2", "olmo", "jais", "trillion", "granite-docling", "exaone4", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
         "jina-v1-en", "jina-v2-code", "roberta-bpe", "gigachat", "a.x-4.0", "mellum", "modern-bert"],
        [Gpt2Regex()], null);

    /// <summary>Every row, GPT-2's first.</summary>
    public static IReadOnlyList<PreTokenizerDescription> All { get; } =
    [
        Gpt2,
        new("llama-bpe", ["llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
            [Llama3()], [Llama3JsonPattern], ignoreMerges: true, addBos: true),
        new("dbrx", ["smaug-bpe", "chatglm-bpe", "glm4"], [Llama3()], null),
        new("qwen2", ["deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"], [Qwen2()], [Qwen2JsonPattern]),
        new("deepseek-llm", [], [Newline(), DeepSeekLlmLetters(), DeepSeekLlmPunctuation(), TrailingSpaces(), DeepSeekCjk(), DigitRun()], null,
            astralLetterRanges: DeepSeekLlmAstralLetters),
        new("deepseek-coder", [], [Newline(), SpaceLetters(), SpacePunctuation(), DeepSeekCjk(), OneDigit()], null),
        new("deepseek-v3", ["hunyuan-dense", "joyai-llm", "hy_v4"], [UpToThreeDigits(), DeepSeekV3Cjk(), DeepSeekV3Words()],
            [DeepSeekV3DigitsPattern, DeepSeekV3CjkPattern,
             "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"]),
        new("falcon", [], [PunctuationRun(), Gpt2Words(), ThreeDigits()], null),
        new("starcoder", ["refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"], [OneDigit(), Gpt2Words()], null),
        new("bloom", ["poro-chat", "gpt3-finnish"], [Bloom()], [BloomPattern]),
        new("viking", [], [Bloom(), OneDigit()], null),
        new("tekken", [], [Tekken()], null, ignoreMerges: true, addBos: true),
        new("gpt-4o", ["llama4", "kanana2", "talkie", "minimax-m2"], [Gpt4o()], null),
        new("default", [], [PunctuationRun(), Gpt2Words(), DigitRun(), ThreeDigits()], null),
    ];

    private static readonly Dictionary<string, PreTokenizerDescription> ByName = BuildNameIndex();

    private static Dictionary<string, PreTokenizerDescription> BuildNameIndex()
    {
        var index = new Dictionary<string, PreTokenizerDescription>(StringComparer.Ordinal);
        foreach (PreTokenizerDescription row in All)
            foreach (string name in row.Aliases.Prepend(row.Name))
                index.Add(name, row);
        return index;
    }

    /// <summary>The row a GGUF <c>tokenizer.ggml.pre</c> value names, or null when none does.</summary>
    /// <param name="name">The <c>tokenizer.ggml.pre</c> value.</param>
    public static PreTokenizerDescription? FindByName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ByName.GetValueOrDefault(name);
    }

    /// <summary>The row whose tokenizer.json Split regexes are exactly <paramref name="patterns"/>, or null.</summary>
    /// <param name="patterns">The Split regexes of a tokenizer.json pre_tokenizer, in order.</param>
    public static PreTokenizerDescription? FindByTokenizerJsonPatterns(IReadOnlyList<string> patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        return patterns.Count == 0 ? null : All.FirstOrDefault(row => row.TokenizerJsonPatterns.SequenceEqual(patterns, StringComparer.Ordinal));
    }

    /// <summary>Every <c>tokenizer.ggml.pre</c> value the catalog knows, for error messages.</summary>
    public static IEnumerable<string> Names => ByName.Keys.Order(StringComparer.Ordinal);

    /// <summary>
    /// Compiles a tokenizer.json regex that matches no row (already rewritten for .NET) with the catalog's options and timeout,
    /// after running it over <see cref="BacktrackingProbes"/>: short texts on which a pattern that backtracks exponentially
    /// (<c>(a+)+$</c>) runs past <see cref="ProbeTimeout"/>, so such a file is refused when loaded rather than when encoding.
    /// A pattern that passes the probes but backtracks on some other text is still stopped by <see cref="MatchTimeout"/>.
    /// </summary>
    /// <remarks>
    /// The backtracking engine is kept (not <see cref="RegexOptions.NonBacktracking"/>, which would bound every pattern in
    /// linear time) because the non-backtracking engine does not support the lookarounds most Split patterns use, and is
    /// not guaranteed to return the same matches: a different split would silently change the token ids.
    /// </remarks>
    /// <exception cref="ArgumentException">The pattern does not compile.</exception>
    /// <exception cref="RegexMatchTimeoutException">The pattern ran past <see cref="ProbeTimeout"/> on a probe text.</exception>
    internal static Regex Compile(string pattern)
    {
        var probe = new Regex(pattern, Options, ProbeTimeout);
        foreach (string text in BacktrackingProbes) _ = probe.Count(text);
        return new Regex(pattern, Options | RegexOptions.Compiled, MatchTimeout);
    }

    /// <summary>Time a backtracking tokenizer.json regex may take on one probe text before the file is refused.</summary>
    internal static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Runs of each kind of character the patterns match, ended by one that fails them: 2^40 paths for a nested quantifier.</summary>
    internal static readonly string[] BacktrackingProbes =
        [.. "aA1 !\n\t\u00E9\u4E2D.'_-".Select(c => new string(c, 40) + "\u0001"), string.Concat(Enumerable.Repeat("a ", 20)) + "\u0001", string.Concat(Enumerable.Repeat("ab1", 14)) + "!"];
}
