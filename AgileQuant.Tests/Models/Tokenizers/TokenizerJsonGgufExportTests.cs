using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Cli;
using AgileQuant.Tests.Models.Architectures;
using AgileQuant.Tests.Models.ChatClient;
using AgileQuant.Tests.Models.Gguf;
using LLama;
using LLama.Common;
using Microsoft.ML.Tokenizers;
using TokenType = AgileQuant.Models.Tokenizers.SpmVocabularyTokenizer.TokenType;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>
/// Hugging Face <c>tokenizer.json</c> vocabularies of ../shared/assets/tokenizers/hf written as vocabulary-only GGUFs by
/// <see cref="GgufVocabulary.FromTokenizerJson"/> and our <see cref="GgufWriter"/>, then read by our tokenizer and by
/// llama.cpp (LLamaSharp, vocabulary-only load): each reproduces the tokenizer's <c>vectors.out</c> (made by
/// transformers.js, assets/README.md), without BOS and special tokens not parsed; with special tokens parsed, the
/// chat-template renderings of ../shared/assets/chat-templates tokenize to their <c>ids</c>. Gemma 3's 262,145-token
/// SentencePiece-style vocabulary (written once per fixture) and, byte-level BPE, Llama 3's and Qwen3's, whose GGUF
/// keys are also compared with ggml-vocab-llama-bpe / -qwen2 (made from the same files by assets' own script).
/// </summary>
[NonParallelizable]
public class TokenizerJsonGgufExportTests
{
    private TempDirectory _temp = null!;
    private readonly Dictionary<string, string> _written = [];

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TempDirectory();

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    /// <summary>hf/<paramref name="name"/>'s tokenizer.json as <see cref="GgufVocabulary"/> (the file unpacked once per process: Gemma's is 33 MB).</summary>
    internal static GgufVocabulary HfVocabulary(string name, int? vocabSize = null)
    {
        lock (Vocabularies)
        {
            if (Vocabularies.TryGetValue((name, vocabSize), out GgufVocabulary? cached)) return cached;
            using var dir = new TempDirectory();
            GgufVocabulary vocabulary = GgufVocabulary.FromTokenizerJson(Path.Combine(TokenizerVectorTests.UnpackHf(name, dir.Path), "tokenizer.json"), vocabSize);
            // One vocabulary kept at a time (Gemma's strings are tens of MB).
            Vocabularies.Clear();
            Vocabularies[(name, vocabSize)] = vocabulary;
            return vocabulary;
        }
    }

    private static readonly Dictionary<(string, int?), GgufVocabulary> Vocabularies = [];

    /// <summary>Writes <paramref name="vocabulary"/> as a vocabulary-only GGUF (architecture and name keys, <c>tokenizer.ggml.*</c>, no tensors).</summary>
    internal static void WriteVocabularyOnly(string path, GgufVocabulary vocabulary, string architecture, string name)
    {
        var w = new GgufWriter();
        w.AddString("general.architecture", architecture);
        w.AddString("general.name", name);
        vocabulary.AddTo(w);
        w.Write(path);
    }

    private string Written(string name, string architecture, int? vocabSize = null)
    {
        if (_written.TryGetValue(name, out string? path)) return path;
        path = Path.Combine(_temp.Path, $"{name}.gguf");
        WriteVocabularyOnly(path, HfVocabulary(name, vocabSize), architecture, name);
        return _written[name] = path;
    }

    private static LLamaWeights LoadLlamaCpp(string path)
    {
        LlamaCppSession.ConfigureLogging();
        return LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
    }

    private static int[] LlamaCpp(LLamaWeights weights, string text, bool addBos, bool parseSpecial) =>
        [.. weights.Tokenize(text, addBos, parseSpecial, Encoding.UTF8).Select(t => (int)t)];

    /// <summary>The vectors, through our tokenizer on the GGUF and through llama.cpp on it; and the chat renderings with special tokens parsed.</summary>
    private static void AssertVectorsAndRenderings(string path, string name, string? chatTemplate)
    {
        List<(string Text, int[] Ids)> vectors = TokenizerVectorTests.HfVectors(name);
        TokenizerVectorTests.AssertVectors(GgufTokenizerLoader.Load(path, addBos: false), vectors);
        using LLamaWeights llama = LoadLlamaCpp(path);
        var failures = new List<string>();
        foreach ((string text, int[] expected) in vectors)
        {
            int[] theirs = LlamaCpp(llama, text, addBos: false, parseSpecial: false);
            if (!theirs.SequenceEqual(expected)) failures.Add($"\"{text}\": expected {string.Join(' ', expected)}, llama.cpp {string.Join(' ', theirs)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
        if (chatTemplate is null) return;
        Tokenizer parsing = GgufTokenizerLoader.Load(path, addBos: false, parseSpecialTokens: true);
        foreach (ChatFormatTests.SharedCase c in ChatFormatTests.ReadShared(chatTemplate).Cases)
        {
            Assert.That(parsing.EncodeToIds(c.Text), Is.EqualTo(c.Ids), c.Text);
            Assert.That(LlamaCpp(llama, c.Text, addBos: false, parseSpecial: true), Is.EqualTo(c.Ids), c.Text);
        }
    }

    [Test]
    public void Gemma3_WrittenAsGguf_HasTheKeysLlamaCppsConverterWrites()
    {
        GgufFile file = GgufFile.Read(Written("gemma3", "gemma3"));
        // convert_hf_to_gguf.py's Gemma 3: a SentencePiece vocabulary ("llama"), no space prefix, BOS added (tokenizer_config.json).
        Assert.That((file.GetString("tokenizer.ggml.model"), file.GetBoolean("tokenizer.ggml.add_space_prefix", true), file.GetBoolean("tokenizer.ggml.add_bos_token", false)),
            Is.EqualTo(("llama", false, true)));
        IReadOnlyList<string> tokens = file.GetArray<string>("tokenizer.ggml.tokens");
        IReadOnlyList<int> types = file.GetArray<int>("tokenizer.ggml.token_type");
        IReadOnlyList<float> scores = file.GetArray<float>("tokenizer.ggml.scores");
        Assert.That(tokens, Has.Count.EqualTo(262_145));
        Assert.That((file.GetInteger("tokenizer.ggml.bos_token_id"), file.GetInteger("tokenizer.ggml.unknown_token_id"), file.GetInteger("tokenizer.ggml.padding_token_id")), Is.EqualTo((2L, 3L, 0L)));
        // Ids and texts from assets/README.md and tokenizer_config.json's added_tokens_decoder.
        (int Id, string Text, TokenType Type)[] expected =
        [
            (1, "<eos>", TokenType.Control), (2, "<bos>", TokenType.Control), (105, "<start_of_turn>", TokenType.Control), (106, "<end_of_turn>", TokenType.Control),
            (6, "<unused0>", TokenType.Control), (4, "<mask>", TokenType.Control), (107, "\n", TokenType.UserDefined), (138, "  ", TokenType.UserDefined),
            (9259, "Hello", TokenType.Normal), (26352, "\u2581Hello", TokenType.Normal),
        ];
        foreach ((int id, string text, TokenType type) in expected) Assert.That((tokens[id], (TokenType)types[id]), Is.EqualTo((text, type)), $"token {id}");
        int newlineByte = tokens.ToList().IndexOf("<0x0A>");
        Assert.That((TokenType)types[newlineByte], Is.EqualTo(TokenType.Byte));
        Assert.That(scores[26352], Is.LessThan(0f), "a merged piece scores minus its merge's rank");
        Assert.That(GgufVocabulary.FromGguf(file).AddSpacePrefix, Is.False, "copied on (export-gguf of a GGUF model, checkpoints)");
    }

    [Test]
    public void FromTokenizerJson_RefusesWhatItCannotWrite_InOneLine()
    {
        string unigram = Path.Combine(_temp.Path, "unigram", "tokenizer.json");
        Directory.CreateDirectory(Path.GetDirectoryName(unigram)!);
        File.WriteAllText(unigram, """{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}""");
        var e = Assert.Throws<ModelFormatException>(() => GgufVocabulary.FromTokenizerJson(unigram));
        Assert.That(e!.Message, Does.Contain("model.type 'BPE'").And.Contain("Unigram").And.Not.Contain("\n"));

        string small = Path.Combine(_temp.Path, "small", "tokenizer.json");
        Directory.CreateDirectory(Path.GetDirectoryName(small)!);
        File.WriteAllText(small, """{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}}""");
        e = Assert.Throws<ModelFormatException>(() => GgufVocabulary.FromTokenizerJson(small, vocabSize: 2));
        Assert.That(e!.Message, Does.Contain("at most 2 tokens"));
        GgufVocabulary written = GgufVocabulary.FromTokenizerJson(small, vocabSize: 4);
        Assert.That((written.Tokens, written.Scores, written.AddSpacePrefix), Is.EqualTo((new[] { "a", "b", "ab", "[PAD3]" }, new[] { 0f, 0f, 0f, -1000f }, false)));
    }

    [Test]
    public void Gemma3_WrittenAsGguf_ReproducesItsVectors_InOurTokenizerAndLlamaCpp() =>
        AssertVectorsAndRenderings(Written("gemma3", "gemma3"), "gemma3", "gemma3");

    [Test]
    public void ExportGguf_OfAHuggingFaceModel_WritesItsTokenizerJsonVocabulary()
    {
        // Llama 3.2's random-weight model at Llama 3's vocabulary size, as a Hugging Face folder with hf/llama3_1's tokenizer.json.
        FamilyTestModel family = FamilyTestModel.All.Single(m => m.Name == "llama3.2");
        const int vocabSize = 128_256;
        string dir = Directory.CreateDirectory(Path.Combine(_temp.Path, "llama3.2-hf")).FullName;
        JsonObject config = JsonNode.Parse(family.HfConfigJson)!.AsObject();
        config["vocab_size"] = vocabSize;
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        TransformerWeights weights = (family with { Config = family.Config with { VocabSize = vocabSize } }).RandomWeights(7);
        HfTestCheckpoint.Write(Path.Combine(dir, SafeTensorsCheckpoint.SingleFileName), family.Family, weights, "model.", storeTiedHead: false);
        TokenizerVectorTests.UnpackHf("llama3_1", dir);

        string exported = Path.Combine(_temp.Path, "llama3.2-hf.gguf");
        var export = AgileQuantProcess.Run("export-gguf", "--model", dir, "--output", exported, "--type", "Q8_0", "--json");
        Assert.That(export.ExitCode, Is.EqualTo(0), export.Stderr);
        using (JsonDocument json = JsonDocument.Parse(export.Stdout)) Assert.That(json.RootElement.GetProperty("vocabulary").GetString(), Is.EqualTo("tokenizer.json"));
        GgufFile ours = GgufFile.Read(exported), reference = GgufFile.Read(TokenizerVectorTests.GgufPath("llama-bpe"));
        foreach (string key in (string[])["tokenizer.ggml.model", "tokenizer.ggml.pre"])
            Assert.That(ours.GetString(key), Is.EqualTo(reference.GetString(key)), key);
        Assert.That(ours.GetArray<string>("tokenizer.ggml.tokens"), Is.EqualTo(reference.GetArray<string>("tokenizer.ggml.tokens")));
        Assert.That(ours.GetArray<int>("tokenizer.ggml.token_type"), Is.EqualTo(reference.GetArray<int>("tokenizer.ggml.token_type")));
        Assert.That(ours.GetArray<string>("tokenizer.ggml.merges"), Is.EqualTo(reference.GetArray<string>("tokenizer.ggml.merges")));
        using LLamaWeights llama = LoadLlamaCpp(exported);
        foreach ((string text, int[] expected) in TokenizerVectorTests.HfVectors("llama3_1"))
            Assert.That(LlamaCpp(llama, text, addBos: false, parseSpecial: false), Is.EqualTo(expected), text);
    }

    [TestCase("llama3_1", "llama-bpe", "llama", null, "llama3_1")]
    [TestCase("qwen3", "qwen2", "qwen2", 151_936, "qwen3")]
    public void ByteLevelBpe_WrittenAsGguf_EqualsItsGgmlVocabFile_AndReproducesItsVectors(string name, string vocab, string architecture, int? vocabSize, string template)
    {
        string path = Written(name, architecture, vocabSize);
        GgufFile ours = GgufFile.Read(path), reference = GgufFile.Read(TokenizerVectorTests.GgufPath(vocab));
        Assert.That(ours.GetString("tokenizer.ggml.pre"), Is.EqualTo(reference.GetString("tokenizer.ggml.pre")));
        Assert.That(ours.GetArray<string>("tokenizer.ggml.tokens"), Is.EqualTo(reference.GetArray<string>("tokenizer.ggml.tokens")));
        Assert.That(ours.GetArray<int>("tokenizer.ggml.token_type"), Is.EqualTo(reference.GetArray<int>("tokenizer.ggml.token_type")));
        Assert.That(ours.GetArray<string>("tokenizer.ggml.merges"), Is.EqualTo(reference.GetArray<string>("tokenizer.ggml.merges")));
        Assert.That(ours.GetInteger("tokenizer.ggml.eos_token_id"), Is.EqualTo(reference.GetInteger("tokenizer.ggml.eos_token_id")));
        AssertVectorsAndRenderings(path, name, template);
    }
}
