using System.Text;
using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>Regression tests for the tokenizer and file-open bugs the fuzzers found: each used to escape as a non-library exception.</summary>
[TestFixture]
public sealed class TokenizerHostileInputTests() : TemporaryDirectoryFixture("aq-tok-hostile-")
{
    private const string Merges = """["a b"]""";

    private string TokenizerJson(string vocab, string merges = Merges, string extra = "") =>
        Temp.Write("tokenizer.json", Encoding.UTF8.GetBytes("{" + extra + "\"model\":{\"type\":\"BPE\",\"vocab\":" + vocab + ",\"merges\":" + merges + "}}"));

    private static void AssertRefused(TestDelegate load, string fragment)
    {
        var e = Assert.Throws<ModelFormatException>(load)!;
        Assert.That(e.Message, Does.Contain(fragment));
    }

    [Test]
    public void InvalidUtf8InAVocabularyTokenIsRefused()
    {
        byte[] json = Encoding.UTF8.GetBytes("""{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"X":3},"merges":["a b"]}}""");
        json[Array.IndexOf(json, (byte)'X')] = 0xFF;
        string path = Temp.Write("tokenizer.json", json);
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(path), "valid UTF-8 text");
    }

    [Test]
    public void LoneSurrogateEscapeInAMergeIsRefused() =>
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(TokenizerJson("""{"a":0,"b":1,"ab":2}""", """["a \udfff"]""")), "valid UTF-8 text");

    [Test]
    public void TokenIdThatIsAStringIsRefused()
    {
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(TokenizerJson("""{"a":"0","b":1,"ab":2}""")), "non-negative int32 id");
        string vocab = Temp.Write("vocab.json", """{"a":0,"b":[1],"ab":2}"""u8.ToArray());
        string merges = Temp.Write("merges.txt", "a b\n"u8.ToArray());
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(vocab, merges), "non-negative int32 id");
    }

    [Test]
    public void AddedTokenWhoseIdIsAStringIsIgnored()
    {
        string path = TokenizerJson("""{"a":0,"b":1,"ab":2}""", extra: """ "added_tokens":[{"id":"7","content":"<x>","special":true}], """);
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(path).EncodeToIds("ab"), Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void SplitBehaviorThatIsNotAStringIsRefused()
    {
        const string pre = """ "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"String":" "},"behavior":3},{"type":"ByteLevel","use_regex":false}]}, """;
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(TokenizerJson("""{"a":0,"b":1,"ab":2}""", extra: pre)), "Split.behavior");
    }

    [Test]
    public void RepeatedMergeIsRefusedNamingBothPlaces() =>
        AssertRefused(() => ByteLevelBpeTokenizerLoader.FromTokenizerJson(TokenizerJson("""{"a":0,"b":1,"ab":2}""", """["a b", ["a", "b"]]""")),
            "merge 1: expected each merge once, found \"a b\" again (first at merge 0)");

    [Test]
    public void TokenizerConfigWithInvalidUtf8IsRefused()
    {
        TokenizerJson("""{"a":0,"b":1,"ab":2}""");
        byte[] config = Encoding.UTF8.GetBytes("""{"add_bos_token":true,"bos_token":"Xa"}""");
        config[Array.IndexOf(config, (byte)'X')] = 0xC3;
        Temp.Write("tokenizer_config.json", config);
        AssertRefused(() => HfTokenizerLoader.LoadFromDirectory(Temp.FullPath), "valid UTF-8 text");
    }

    [Test]
    public void MissingSafeTensorsFileIsAModelFormatException()
    {
        string path = Path.Combine(Temp.FullPath, "absent.safetensors");
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path))!;
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.InnerException, Is.InstanceOf<FileNotFoundException>());
    }
}
