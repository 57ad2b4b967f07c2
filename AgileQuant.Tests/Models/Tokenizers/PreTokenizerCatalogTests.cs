using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>The pre-tokenizer rows: names, the tokenizer.json spellings they match, and matching per code point.</summary>
public class PreTokenizerCatalogTests
{
    private static string[] Pieces(string row, string text) =>
        PreTokenizerCatalog.FindByName(row)!.CreatePreTokenizer().PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)).ToArray();

    [Test]
    public void EveryNameFindsItsRowAndUnknownNamesFindNone()
    {
        foreach (PreTokenizerDescription row in PreTokenizerCatalog.All)
            foreach (string name in row.Aliases.Prepend(row.Name))
                Assert.That(PreTokenizerCatalog.FindByName(name), Is.SameAs(row), name);
        Assert.That(PreTokenizerCatalog.FindByName("kimi-k2"), Is.Null);
        Assert.That(PreTokenizerCatalog.Names, Does.Contain("llama-bpe").And.Contain("deepseek-coder").And.Contain("refact"));
    }

    [TestCase("llama3_1", "llama-bpe")]
    [TestCase("qwen3", "qwen2")]
    [TestCase("deepseek_v3", "deepseek-v3")]
    public void TokenizerJsonSplitRegexesFindTheGgufRow(string tokenizer, string row)
    {
        using var dir = new TempDirectory();
        TokenizerVectorTests.UnpackHf(tokenizer, dir.Path);
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "tokenizer.json")));
        string[] patterns = doc.RootElement.GetProperty("pre_tokenizer").GetProperty("pretokenizers").EnumerateArray()
            .Where(step => step.GetProperty("type").GetString() == "Split")
            .Select(step => step.GetProperty("pattern").GetProperty("Regex").GetString()!).ToArray();
        Assert.That(PreTokenizerCatalog.FindByTokenizerJsonPatterns(patterns)?.Name, Is.EqualTo(row));
    }

    [Test]
    public void CodePointsAboveTheBmpMatchByTheirCategory()
    {
        // U+1D7CF.. are mathematical bold digits (Nd), U+1D400/U+1D401 bold capitals (Lu), U+1F999 an emoji (So):
        // Oniguruma and llama.cpp see them as one code point each, where .NET would see two surrogates (category Cs).
        const string digits = "x\U0001D7CF\U0001D7D0\U0001D7D1\U0001D7D2y";
        Assert.That(Pieces("llama-bpe", digits), Is.EqualTo(new[] { "x", "\U0001D7CF\U0001D7D0\U0001D7D1", "\U0001D7D2", "y" }));
        Assert.That(Pieces("qwen2", digits), Is.EqualTo(new[] { "x", "\U0001D7CF", "\U0001D7D0", "\U0001D7D1", "\U0001D7D2", "y" }));
        Assert.That(Pieces("qwen2", " \U0001D400\U0001D401c d"), Is.EqualTo(new[] { " \U0001D400\U0001D401c", " d" }));
        Assert.That(Pieces("deepseek-v3", "a \U0001F999\U0001F999!"), Is.EqualTo(new[] { "a", " \U0001F999\U0001F999!" }));
        // DeepSeek LLM lists Deseret (U+10400..) among its letters, not mathematical bold capitals.
        Assert.That(Pieces("deepseek-llm", " \U00010400\U00010428 \U0001D400"), Is.EqualTo(new[] { " \U00010400\U00010428", " \U0001D400" }));
        // A lone surrogate is a piece of its own text, never split from or merged into a neighbour's code point.
        Assert.That(string.Concat(Pieces("llama-bpe", "a\uD800b \uDC00")), Is.EqualTo("a\uD800b \uDC00"));
    }

    [Test]
    public void WikiTextSizedTextPreTokenizesInLinearTime()
    {
        // Every row's regexes are linear: a long run of one character class (the worst case for `\s+(?!\S)` and
        // `\s*[\r\n]+`) and WikiText-2 itself finish far inside the match timeout.
        string[] hostile = [new string(' ', 200_000) + "x", new string('a', 200_000), string.Concat(Enumerable.Repeat("\u3042\u0301", 100_000)), new string('\n', 200_000)];
        string wiki = Llama2cTokenizerTests.ReadWikiText();
        foreach (PreTokenizerDescription row in PreTokenizerCatalog.All)
        {
            IsolatedSplitPreTokenizer pre = row.CreatePreTokenizer();
            foreach (string text in hostile.Append(wiki))
                Assert.That(pre.PreTokenize(text).Sum(p => p.Length), Is.EqualTo(text.Length), $"{row.Name}: pieces cover the text");
        }
    }

    [Test]
    public void UnsupportedPreTokenizerNamesAndModelsAreRefusedByName()
    {
        using var dir = new TempDirectory();
        string t5 = dir.Write("t5.gguf", new Gguf.GgufTestWriter()
            .Add("tokenizer.ggml.model", 8, w => Gguf.GgufTestWriter.WriteString(w, "t5"))
            .Add("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(1UL); Gguf.GgufTestWriter.WriteString(w, "a"); })
            .Build([]));
        Assert.That(Assert.Throws<ModelFormatException>(() => GgufTokenizerLoader.Load(t5))!.Message, Does.Contain("'t5'"));
    }
}
