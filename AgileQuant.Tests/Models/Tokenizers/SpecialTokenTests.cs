using System.Text.Json;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>
/// Special tokens: parsed from text only when asked (user-defined tokens always, as llama.cpp and Hugging Face do), and
/// the ids the files declare. Chat-template renderings (../shared/assets/chat-templates, ids from transformers.js with the
/// template's special tokens matched, checked against llama.cpp) are the reference for parsing.
/// </summary>
public class SpecialTokenTests
{
    private static List<(string Text, int[] Ids)> TemplateCases(string template)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(SharedAssets.Require($"assets/chat-templates/{template}.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray()))
            .ToList();
    }

    [TestCase("llama3_1", "llama3_1")]
    [TestCase("llama3_1", "llama3_1-instruct-hf")]
    [TestCase("qwen3", "qwen3")]
    [TestCase("qwen3", "qwen2_5-instruct-hf")]
    [TestCase("gemma3", "gemma3")]
    [TestCase("deepseek_v3", "deepseek_v3")]
    public void ParsedSpecialTokens_ReproduceChatTemplateIds(string tokenizer, string template)
    {
        using var dir = new TempDirectory();
        TokenizerVectorTests.UnpackHf(tokenizer, dir.Path);
        Tokenizer parsing = HfTokenizerLoader.LoadFromDirectory(dir.Path, addBos: false, parseSpecialTokens: true);
        Tokenizer plain = HfTokenizerLoader.LoadFromDirectory(dir.Path, addBos: false);
        foreach ((string text, int[] ids) in TemplateCases(template))
        {
            Assert.That(parsing.EncodeToIds(text), Is.EqualTo(ids), text);
            Assert.That(plain.EncodeToIds(text), Is.Not.EqualTo(ids), "by default the template's special tokens are plain text");
        }
    }

    [TestCase("llama-bpe", "llama3_1")]
    [TestCase("qwen2", "qwen3")]
    [TestCase("qwen2", "qwen2_5-instruct-hf")]
    public void GgufParsedSpecialTokens_ReproduceChatTemplateIds(string vocabulary, string template)
    {
        Tokenizer parsing = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath(vocabulary), addBos: false, parseSpecialTokens: true);
        foreach ((string text, int[] ids) in TemplateCases(template))
            Assert.That(parsing.EncodeToIds(text), Is.EqualTo(ids), text);
    }

    [Test]
    public void ControlTokensAreTextByDefault_UserDefinedTokensAlwaysMatch()
    {
        Tokenizer qwen = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("qwen2"), addBos: false);
        Tokenizer qwenParsing = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("qwen2"), addBos: false, parseSpecialTokens: true);
        // <|im_end|> is CONTROL: plain text unless asked; <think> is USER_DEFINED: always its id (llama.cpp tokenizer_st_partition).
        Assert.That(qwen.EncodeToIds("<|im_end|>"), Has.Count.GreaterThan(1));
        Assert.That(qwenParsing.EncodeToIds("<|im_end|>"), Is.EqualTo(new[] { 151645 }));
        Assert.That(qwen.EncodeToIds("a<think>b"), Does.Contain(151667));
        Assert.That(qwen.Decode(qwen.EncodeToIds("say <|im_end|> and <|endoftext|>")), Is.EqualTo("say <|im_end|> and <|endoftext|>"));

        Tokenizer spm = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("llama-spm"), addBos: false);
        Tokenizer spmParsing = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("llama-spm"), addBos: false, parseSpecialTokens: true);
        Assert.That(spm.EncodeToIds("<s>"), Does.Not.Contain(1));
        // llama.cpp prefixes each stretch of text that follows a special token with the SentencePiece space.
        Assert.That(spmParsing.EncodeToIds("<s>Hello</s>"), Is.EqualTo(new[] { 1, 15043, 2 }));

        Tokenizer bert = GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("bert-bge"), parseSpecialTokens: true);
        Assert.That(bert.EncodeToIds("[CLS] hello [SEP]"), Is.EqualTo(new[] { 101, 7592, 102 }));
        Assert.That(GgufTokenizerLoader.Load(TokenizerVectorTests.GgufPath("bert-bge")).EncodeToIds("[CLS]"), Does.Not.Contain(101));
    }

    [Test]
    public void GgufDeclaredSpecialTokens()
    {
        SpecialTokens llama3 = TokenizerFile.Load(TokenizerVectorTests.GgufPath("llama-bpe")).Special;
        Assert.That((llama3.Bos, llama3.Eos), Is.EqualTo(((int?)128000, (int?)128009)));
        Assert.That(llama3.IdOf("<|eot_id|>"), Is.EqualTo(128009));
        Assert.That(llama3.IdOf("<|start_header_id|>"), Is.EqualTo(128006));
        Assert.That(llama3.EndOfGeneration, Does.Contain(128009));

        SpecialTokens qwen = TokenizerFile.Load(TokenizerVectorTests.GgufPath("qwen2")).Special;
        Assert.That((qwen.Eos, qwen.Padding, qwen.IdOf("<|im_start|>"), qwen.IdOf("<think>")), Is.EqualTo(((int?)151645, (int?)151643, (int?)151644, (int?)151667)));

        SpecialTokens bert = TokenizerFile.Load(TokenizerVectorTests.GgufPath("bert-bge")).Special;
        Assert.That((bert.Bos, bert.Unknown), Is.EqualTo(((int?)101, (int?)100)), "BERT's BOS is [CLS]");
    }

    [Test]
    public void HfDeclaredSpecialTokens()
    {
        using var dir = new TempDirectory();
        LoadedTokenizer gemma = TokenizerFile.Load(TokenizerVectorTests.UnpackHf("gemma3", dir.Path));
        Assert.That(gemma.Format, Is.EqualTo("tokenizer.json"));
        Assert.That((gemma.Special.Bos, gemma.Special.Eos, gemma.Special.Padding), Is.EqualTo(((int?)2, (int?)106, (int?)0)), "tokenizer_config.json: <bos>, <end_of_turn>, <pad>");
        Assert.That(gemma.Special.IdOf("<start_of_turn>"), Is.EqualTo(105));
        Assert.That(gemma.Tokenizer.EncodeToIds("Hi").First(), Is.EqualTo(2), "the post-processor adds <bos> by default");

        File.WriteAllText(Path.Combine(dir.Path, "generation_config.json"), """{"eos_token_id": [1, 106]}""");
        Assert.That(TokenizerFile.Load(dir.Path).Special.EndOfGeneration, Is.EqualTo(new[] { 106, 1 }));
    }
}
