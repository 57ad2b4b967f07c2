using System.Text;
using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

public class ByteLevelBpeTokenizerLoaderTests
{
    /// <summary>GPT-2's vocabulary and merges, taken from llama.cpp's ggml-vocab-gpt-2.gguf.</summary>
    internal static (IReadOnlyList<string> Tokens, IReadOnlyList<string> Merges) Gpt2Vocabulary()
    {
        GgufFile gguf = GgufFile.Read(SharedAssets.Require("assets/tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf"));
        return (gguf.GetArray<string>("tokenizer.ggml.tokens"), gguf.GetArray<string>("tokenizer.ggml.merges"));
    }

    internal static string VocabJson(IReadOnlyList<string> tokens) =>
        JsonSerializer.Serialize(tokens.Select((t, id) => (t, id)).DistinctBy(e => e.t).ToDictionary(e => e.t, e => e.id));

    private static void AssertMatchesVectors(Tokenizer tokenizer)
    {
        foreach ((string text, int[] expected) in GgufTokenizerLoaderTests.ReadVectors("gpt-2"))
            Assert.That(tokenizer.EncodeToIds(text), Is.EqualTo(expected), text);
    }

    [Test]
    public void VocabJsonAndMergesTxt_ReproduceGpt2Vectors()
    {
        (IReadOnlyList<string> tokens, IReadOnlyList<string> merges) = Gpt2Vocabulary();
        using var dir = new TempDirectory();
        string vocab = dir.Write("vocab.json", Encoding.UTF8.GetBytes(VocabJson(tokens)));
        string mergesTxt = dir.Write("merges.txt", Encoding.UTF8.GetBytes("#version: 0.2\n" + string.Join("\n", merges) + "\n"));
        BpeTokenizer tokenizer = ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocab, mergesTxt);
        AssertMatchesVectors(tokenizer);
        const string text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～";
        Assert.That(tokenizer.Decode(tokenizer.EncodeToIds(text)), Is.EqualTo(text));
    }

    [Test]
    public void VocabJsonWithBosToken_PrependsItLikeOpt()
    {
        (IReadOnlyList<string> tokens, IReadOnlyList<string> merges) = Gpt2Vocabulary();
        using var dir = new TempDirectory();
        string vocab = dir.Write("vocab.json", Encoding.UTF8.GetBytes(VocabJson(tokens)));
        string mergesTxt = dir.Write("merges.txt", Encoding.UTF8.GetBytes(string.Join("\n", merges)));
        BpeTokenizer tokenizer = ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocab, mergesTxt, beginningOfSentenceToken: "<|endoftext|>");
        Assert.That(tokenizer.EncodeToIds("Hello world"), Is.EqualTo(new[] { 50256, 15496, 995 }));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TokenizerJson_AcceptsBothMergeSpellings(bool pairArrays)
    {
        (IReadOnlyList<string> tokens, IReadOnlyList<string> merges) = Gpt2Vocabulary();
        object mergeList = pairArrays ? merges.Select(m => m.Split(' ')).ToArray() : merges.ToArray();
        string json = $$"""
            {"version":"1.0","added_tokens":[{"id":50256,"content":"<|endoftext|>","special":true}],
             "pre_tokenizer":{"type":"ByteLevel"},
             "model":{"type":"BPE","vocab":{{VocabJson(tokens)}},"merges":{{JsonSerializer.Serialize(mergeList)}}
            """ + "}}";
        using var dir = new TempDirectory();
        Tokenizer tokenizer = ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("tokenizer.json", Encoding.UTF8.GetBytes(json)), parseSpecialTokens: true);
        AssertMatchesVectors(tokenizer);
        Assert.That(tokenizer.EncodeToIds("a<|endoftext|>b"), Is.EqualTo(new[] { 64, 50256, 65 }), "special tokens are matched verbatim");
    }

    private const string BloomSplitPattern = @" ?[^(\s|[.,!?…。，、।۔،])]+";

    [Test]
    public void BloomSplitPattern_TranslatesNestedClassAndIsolatesGaps()
    {
        string? translated = IsolatedSplitPreTokenizer.TranslateOnigurumaPattern(BloomSplitPattern);
        Assert.That(translated, Is.EqualTo(@" ?[^(\s|.,!?…。，、।۔،)]+"));
        var preTokenizer = new IsolatedSplitPreTokenizer(new System.Text.RegularExpressions.Regex(translated!), new Dictionary<string, int> { ["<pad>"] = 3 });
        const string text = "Hello, world (x|y)!<pad>a  b";
        string[] pieces = preTokenizer.PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)).ToArray();
        // Oniguruma's class excludes whitespace, ( ) | and the listed punctuation; gaps between matches are pieces too.
        Assert.That(pieces, Is.EqualTo(new[] { "Hello", ",", " world", " (", "x", "|", "y", ")!", "<pad>", "a", " ", " b" }));
        Assert.That(IsolatedSplitPreTokenizer.TranslateOnigurumaPattern("[a[^b]]"), Is.Null);
    }

    [Test]
    public void TokenizerJson_WithBloomStylePreTokenizer_SplitsThenByteLevelEncodes()
    {
        (IReadOnlyList<string> tokens, IReadOnlyList<string> merges) = Gpt2Vocabulary();
        string preTokenizer = JsonSerializer.Serialize(new
        {
            type = "Sequence",
            pretokenizers = new object[]
            {
                new { type = "Split", pattern = new { Regex = BloomSplitPattern }, behavior = "Isolated", invert = false },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false },
            },
        });
        string json = "{\"normalizer\":null,\"pre_tokenizer\":" + preTokenizer + ",\"model\":{\"type\":\"BPE\",\"byte_fallback\":false,\"vocab\":"
            + VocabJson(tokens) + ",\"merges\":" + JsonSerializer.Serialize(merges) + "}}";
        using var dir = new TempDirectory();
        Tokenizer bloomStyle = ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("tokenizer.json", Encoding.UTF8.GetBytes(json)));
        Tokenizer gpt2 = ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("gpt2.json", Encoding.UTF8.GetBytes(
            "{\"model\":{\"type\":\"BPE\",\"vocab\":" + VocabJson(tokens) + ",\"merges\":" + JsonSerializer.Serialize(merges) + "}}")));
        // Here both pre-tokenizers cut the same pieces, so the ids agree with the vector-checked GPT-2 tokenizer...
        const string same = "Hello, world (x|y)!";
        Assert.That(bloomStyle.EncodeToIds(same), Is.EqualTo(gpt2.EncodeToIds(same)));
        // ...but with merges across a letter/digit boundary the cut matters: BLOOM keeps "a1" whole, GPT-2 cuts it.
        string TinyVocabulary(string pre) => dir.Write(Guid.NewGuid() + ".json", Encoding.UTF8.GetBytes(
            "{\"pre_tokenizer\":" + pre + ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"1\":1,\"a1\":2},\"merges\":[\"a 1\"]}}"));
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(TinyVocabulary(preTokenizer)).EncodeToIds("a1"), Is.EqualTo(new[] { 2 }));
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(TinyVocabulary("{\"type\":\"ByteLevel\"}")).EncodeToIds("a1"), Is.EqualTo(new[] { 0, 1 }));
        const string text = "it's 2024: caf\u00e9\u3002 <|endoftext|>";
        Assert.That(bloomStyle.Decode(bloomStyle.EncodeToIds(text)), Is.EqualTo(text));
    }

    [Test]
    public void TokenizerJson_WithUnsupportedFeatures_IsRefused()
    {
        using var dir = new TempDirectory();
        string Write(string extra, string modelExtra = "") => dir.Write(Guid.NewGuid() + ".json", Encoding.UTF8.GetBytes(
            "{" + extra + "\"model\":{\"type\":\"BPE\"" + modelExtra + ",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}"));
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("\"normalizer\":{\"type\":\"NFKD\"},")), "normalizer");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("", ",\"byte_fallback\":true")), "byte_fallback");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("", ",\"continuing_subword_prefix\":\"##\"")), "continuing_subword_prefix");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("\"pre_tokenizer\":{\"type\":\"Digits\"},")), "Digits");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true},")), "add_prefix_space");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write(
            "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Removed\"},{\"type\":\"ByteLevel\",\"use_regex\":false}]},")), "Isolated");
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(Write("\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true},")).EncodeToIds("ab"),
            Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void MalformedFiles_ThrowModelFormatException()
    {
        using var dir = new TempDirectory();
        const string vocab = """{"a":0,"b":1,"ab":2}""";
        string Json(string merges) => dir.Write(Guid.NewGuid() + ".json", Encoding.UTF8.GetBytes(
            "{\"model\":{\"type\":\"BPE\",\"vocab\":" + vocab + ",\"merges\":" + merges + "}}"));

        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Json("[]")), "at least one BPE merge");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Json("""["a b c"]""")), "model.merges[0]");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Json("""[["a"]]""")), "model.merges[0]");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(Json("""["a x"]""")), "vocabulary");
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(Json("""[["a","b"]]""")).EncodeToIds("ab"), Is.EqualTo(new[] { 2 }));
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("wp.json", Encoding.UTF8.GetBytes(
            """{"model":{"type":"WordPiece","vocab":{"a":0}}}"""))), "BPE");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("bad.json", Encoding.UTF8.GetBytes("{\"model\":"))), "JSON");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(dir.Write("dup.json", Encoding.UTF8.GetBytes(
            """{"model":{"type":"BPE","vocab":{"a":0,"b":0},"merges":["a b"]}}"""))), "unique ids");

        string vocabPath = dir.Write("vocab.json", Encoding.UTF8.GetBytes(vocab));
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocabPath, dir.Write("empty.txt", "#version: 0.2\n"u8.ToArray())), "at least one BPE merge");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocabPath, dir.Write("bad.txt", "a b\nab\n"u8.ToArray())), "line 2");
        AssertRejects(() => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocabPath, Path.Combine(dir.Path, "missing.txt")), "no file");
    }

    private static void AssertRejects(TestDelegate load, string expectedFragment)
    {
        var error = Assert.Throws<ModelFormatException>(load)!;
        Assert.That(error.Message, Does.Contain(expectedFragment));
    }
}
