using System.Text;
using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

public class HfTokenizerLoaderTests
{
    private static (string VocabJson, string MergesTxt) Gpt2Files()
    {
        (IReadOnlyList<string> tokens, IReadOnlyList<string> merges) = ByteLevelBpeTokenizerLoaderTests.Gpt2Vocabulary();
        return (ByteLevelBpeTokenizerLoaderTests.VocabJson(tokens), "#version: 0.2\n" + string.Join("\n", merges));
    }

    [Test]
    public void SentencePieceDirectory_GivesExactSentencePieceTokenizer()
    {
        using var dir = new TempDirectory();
        File.Copy(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"), Path.Combine(dir.Path, "tokenizer.model"));
        Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(dir.Path);
        Assert.That(tokenizer, Is.InstanceOf<SpmVocabularyTokenizer>());
        Assert.That(tokenizer.EncodeToIds("Hello world"), Is.EqualTo(new[] { 1, 15043, 3186 }), "ids from llama.cpp's llama-spm vectors, after BOS");
    }

    [Test]
    public void OptStyleDirectory_PrependsConfiguredBos()
    {
        (string vocab, string merges) = Gpt2Files();
        using var dir = new TempDirectory();
        dir.Write("vocab.json", Encoding.UTF8.GetBytes(vocab));
        dir.Write("merges.txt", Encoding.UTF8.GetBytes(merges));
        Assert.That(HfTokenizerLoader.LoadFromDirectory(dir.Path).EncodeToIds("Hello world"), Is.EqualTo(new[] { 15496, 995 }), "GPT-2: no BOS");
        dir.Write("tokenizer_config.json", """{"add_bos_token": true, "bos_token": {"content": "<|endoftext|>", "special": true}}"""u8.ToArray());
        Assert.That(HfTokenizerLoader.LoadFromDirectory(dir.Path).EncodeToIds("Hello world"), Is.EqualTo(new[] { 50256, 15496, 995 }));
    }

    [Test]
    public void TokenizerJsonDirectory_TakesBosFromTemplateProcessing()
    {
        (string vocab, string merges) = Gpt2Files();
        string mergeArray = JsonSerializer.Serialize(merges.Split('\n').Skip(1).ToArray());
        string json = "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|endoftext|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}]},"
            + "\"model\":{\"type\":\"BPE\",\"vocab\":" + vocab + ",\"merges\":" + mergeArray + "}}";
        using var dir = new TempDirectory();
        dir.Write("tokenizer.json", Encoding.UTF8.GetBytes(json));
        Assert.That(HfTokenizerLoader.LoadFromDirectory(dir.Path).EncodeToIds("Hello world"), Is.EqualTo(new[] { 50256, 15496, 995 }));
    }

    [Test]
    public void DirectoryWithoutTokenizer_ThrowsModelFormatException()
    {
        using var dir = new TempDirectory();
        Assert.That(Assert.Throws<ModelFormatException>(() => HfTokenizerLoader.LoadFromDirectory(dir.Path))!.Message, Does.Contain("tokenizer.model"));
        dir.Write("tokenizer_config.json", """{"add_bos_token": true}"""u8.ToArray());
        Assert.That(Assert.Throws<ModelFormatException>(() => HfTokenizerLoader.LoadFromDirectory(dir.Path))!.Message, Does.Contain("bos_token"));
    }
}
