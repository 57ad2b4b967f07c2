using System.Text;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.Gguf;
using LLama;
using LLama.Common;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>
/// The GGUF tokenizers against llama.cpp itself (LLamaSharp, vocabulary-only load, <c>llama_tokenize</c> without BOS)
/// on more text than the vectors: a slice of WikiText-2 and TinyStories, and a line of scripts and characters the vectors
/// lack (astral letters and digits, combining marks, Hangul, Deseret); with special-token parsing on, a text that writes
/// every added token of the vocabulary.
/// </summary>
[NonParallelizable]
public class LlamaCppTokenizerConformanceTests
{
    private const string Hostile =
        "Ångström café naïve — Ελληνικά, русский, 한국어 텍스트, 가, 日本語のテキスト, ภาษาไทย, हिन्दी. " +
        "\U0001D400\U0001D401\U0001D402 bold \U0001D7CF\U0001D7D0\U0001D7D1\U0001D7D2\U0001D7D3 digits, \U00010400\U00010428 Deseret, " +
        "\U00020000\U00020001 CJK-B, e\u0301\u0323 marks, \U0001F469\u200D\U0001F4BB\U0001F3FD emoji, ½ ² Ⅻ, tab\there  two  spaces\r\n" +
        "x=1;y<=2&&z!=3 // code\n\tindent 123456789 12.5e-3 ＡＢＣ１２３ 「引用」 ‘quotes’ «guillemets» ...";

    private static string Corpus()
    {
        string wiki = Llama2cTokenizerTests.ReadWikiText();
        string stories = string.Join("\n", Llama2cTokenizerTests.ReadTinyStories().Take(50));
        return wiki[..60_000] + "\n" + stories + "\n" + Hostile;
    }

    private static int[] LlamaCpp(LLamaWeights weights, string text, bool parseSpecial) =>
        weights.Tokenize(text, false, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    private static LLamaWeights LoadVocabulary(string path)
    {
        LlamaCppSession.ConfigureLogging();
        return LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
    }

    [TestCaseSource(typeof(TokenizerVectorTests), nameof(TokenizerVectorTests.GgufVocabularies))]
    public void GgufVocabulary_MatchesLlamaCpp(string name)
    {
        string path = TokenizerVectorTests.GgufPath(name);
        using LLamaWeights weights = LoadVocabulary(path);
        Tokenizer ours = GgufTokenizerLoader.Load(path, addBos: false);
        string corpus = Corpus();
        // Line by line, so that a difference names its line.
        foreach (string line in corpus.Split('\n').Where(l => l.Length > 0).Append(corpus))
        {
            int[] expected = LlamaCpp(weights, line, parseSpecial: false);
            int[] actual = ours.EncodeToIds(line).ToArray();
            if (!actual.SequenceEqual(expected))
                Assert.Fail($"{name}: \"{line[..Math.Min(line.Length, 200)]}\"\n  llama.cpp {string.Join(' ', expected.Take(60))}\n  ours      {string.Join(' ', actual.Take(60))}");
        }
    }

    [TestCaseSource(typeof(TokenizerVectorTests), nameof(TokenizerVectorTests.GgufVocabularies))]
    public void GgufVocabulary_ParsesSpecialTokensAsLlamaCpp(string name)
    {
        string path = TokenizerVectorTests.GgufPath(name);
        using LLamaWeights weights = LoadVocabulary(path);
        LoadedTokenizer parsing = TokenizerFile.Load(path, addBos: false, parseSpecialTokens: true);
        Tokenizer plain = GgufTokenizerLoader.Load(path, addBos: false);
        // Each added token between words, after a space and before one (Phi-3's tokens swallow the space after them).
        string[] added = parsing.Special.ByText.Keys.Where(k => !k.Contains('\n')).Order(StringComparer.Ordinal).Take(40).ToArray();
        Assert.That(added, Is.Not.Empty);
        string text = "Hello" + string.Concat(added.Select((token, i) => $"{token}word{i} {token} x"));
        Assert.That(parsing.Tokenizer.EncodeToIds(text), Is.EqualTo(LlamaCpp(weights, text, parseSpecial: true)), "special tokens parsed");
        Assert.That(plain.EncodeToIds(text), Is.EqualTo(LlamaCpp(weights, text, parseSpecial: false)), "special tokens as text");
    }
}
