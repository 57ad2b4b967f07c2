using System.Text;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

public class GgufTokenizerLoaderTests
{
    /// <summary>
    /// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0): inputs separated by a
    /// "\n__ggml_vocab_test__\n" line (the file ends with one), and one line of space-separated ids per input.
    /// </summary>
    internal static List<(string Text, int[] Ids)> ReadVectors(string vocabName) =>
        ReadVectorFiles($"assets/tokenizers/ggml-vocab/ggml-vocab-{vocabName}.gguf.inp", $"assets/tokenizers/ggml-vocab/ggml-vocab-{vocabName}.gguf.out");

    /// <summary>Vectors in the same format from any two files under ../shared (the hf/ tokenizers' vectors.inp and vectors.out).</summary>
    internal static List<(string Text, int[] Ids)> ReadVectorFiles(string inpPath, string outPath)
    {
        string inp = File.ReadAllText(SharedAssets.Require(inpPath), Encoding.UTF8);
        string[] outLines = File.ReadAllText(SharedAssets.Require(outPath)).Split('\n');
        List<string> inputs = inp.Split("\n__ggml_vocab_test__\n").ToList();
        Assert.That(inputs[^1], Is.Empty, "the input file ends with a separator");
        inputs.RemoveAt(inputs.Count - 1);
        Assert.That(outLines[^1], Is.Empty, "the output file ends with a newline");
        Assert.That(outLines.Length - 1, Is.EqualTo(inputs.Count));
        return inputs.Select((text, i) => (text, outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }

    private static void AssertVectors(Tokenizer tokenizer, string vocabName)
    {
        List<(string Text, int[] Ids)> vectors = ReadVectors(vocabName);
        Assert.That(vectors, Has.Count.GreaterThan(40));
        var failures = new List<string>();
        foreach ((string text, int[] expected) in vectors)
        {
            int[] actual = tokenizer.EncodeToIds(text).ToArray();
            if (!actual.SequenceEqual(expected))
                failures.Add($"{Escape(text)}\n  expected {string.Join(' ', expected)}\n  actual   {string.Join(' ', actual)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    private static string Escape(string text) => "\"" + text.Replace("\n", "\\n").Replace("\t", "\\t") + "\"";

    [Test]
    public void LlamaSpmVocab_ReproducesLlamaCppVectors()
    {
        Tokenizer tokenizer = GgufTokenizerLoader.Load(SharedAssets.Require("assets/tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf"), addBos: false);
        Assert.That(tokenizer, Is.InstanceOf<SpmVocabularyTokenizer>());
        AssertVectors(tokenizer, "llama-spm");
    }

    [Test]
    public void Gpt2Vocab_ReproducesLlamaCppVectors()
    {
        Tokenizer tokenizer = GgufTokenizerLoader.Load(SharedAssets.Require("assets/tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf"), addBos: false);
        Assert.That(tokenizer, Is.InstanceOf<BpeTokenizer>());
        AssertVectors(tokenizer, "gpt-2");
    }

    [Test]
    public void Gpt2Vocab_MatchesTiktokenR50kOnWikiTextAndTinyStories()
    {
        // Reference: js-tiktoken 1.0.21, getEncoding("r50k_base") (GPT-2's vocabulary and regex), encode(text) with no BOS:
        // count, sum and sum of index * id over WikiText-2's test lines joined by "\n", and over the 1000 stories concatenated.
        Tokenizer tokenizer = GgufTokenizerLoader.Load(SharedAssets.Require("assets/tokenizers/ggml-vocab/ggml-vocab-gpt-2.gguf"), addBos: false);
        Assert.That(Llama2cTokenizerTests.IdChecksum(tokenizer.EncodeToIds(Llama2cTokenizerTests.ReadWikiText())),
            Is.EqualTo((286_220, 1_471_477_833L, 211_392_885_647_510L)));
        var stories = new List<int>();
        foreach (string story in Llama2cTokenizerTests.ReadTinyStories()) stories.AddRange(tokenizer.EncodeToIds(story));
        Assert.That(Llama2cTokenizerTests.IdChecksum(stories), Is.EqualTo((193_559, 628_931_515L, 61_224_342_868_949L)));
    }
}

public class SpmVocabularyTokenizerTests
{
    private static SpmVocabularyTokenizer LoadLlamaSpm(bool addBos) => (SpmVocabularyTokenizer)GgufTokenizerLoader.Load(
        SharedAssets.Require("assets/tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf"), addBos);

    [Test]
    public void LlamaSpm_MatchesSentencePieceReferenceAndRoundTrips()
    {
        SpmVocabularyTokenizer ours = LoadLlamaSpm(addBos: true);
        LlamaTokenizer reference = HfLlamaTokenizerLoader.LoadModelFile(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"));
        Assert.That((ours.BosId, ours.EosId, ours.VocabSize), Is.EqualTo((1, 2, 32000)));
        string[] sentences =
        [
            "Once upon a time, there was a little girl named Lily.",
            "Ünïcödé façade: naïve café, Ελληνικά, 日本語のテキスト 😀.",
            "Line one.\nLine two.\n\n  indented\tand tabbed",
        ];
        foreach (string sentence in sentences.Concat(Llama2cTokenizerTests.ReadTinyStories()))
        {
            IReadOnlyList<int> ids = ours.EncodeToIds(sentence);
            Assert.That(ids, Is.EqualTo(reference.EncodeToIds(sentence)), sentence);
            Assert.That(ours.Decode(ids), Is.EqualTo(sentence));
        }
    }

    [Test]
    public void LlamaSpm_MatchesSentencePieceOnWikiText2()
    {
        // Same reference as Llama2cTokenizerTests.Llama2_32k_MatchesSentencePieceOnWikiText2 (sentencepiece 0.1.97, BOS prepended).
        SpmVocabularyTokenizer tokenizer = LoadLlamaSpm(addBos: true);
        Assert.That(Llama2cTokenizerTests.IdChecksum(tokenizer.EncodeToIds(Llama2cTokenizerTests.ReadWikiText())),
            Is.EqualTo(Llama2cTokenizerTests.SentencePieceWikiTextChecksum));
    }

    [Test]
    public void SentencePieceModel_LoadsLlamaVocabularyAndMatchesSentencePiece()
    {
        SpmVocabularyTokenizer model = SpmVocabularyTokenizer.LoadSentencePieceModel(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"));
        Llama2cTokenizer bin = Llama2cTokenizer.Load(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin"), 32000);
        Assert.That((model.VocabSize, model.BosId, model.EosId), Is.EqualTo((32000, 1, 2)));
        // llama2.c's export of the same model writes each piece with '\u2581' as ' ' and the same score.
        for (int id = 3; id < 32000; id++)
        {
            if (model.GetPiece(id).Replace('\u2581', ' ') != bin.GetPiece(id) || model.GetScore(id) != bin.GetScore(id))
                Assert.Fail($"token {id}: '{model.GetPiece(id)}' {model.GetScore(id)} vs '{bin.GetPiece(id)}' {bin.GetScore(id)}");
        }
        Assert.That(model.EncodeToIds(" Mark VIIIs were produced"), Is.EqualTo(new[] { 1, 29871, 4485, 13408, 3624, 892, 7371 }));
        Assert.That(Llama2cTokenizerTests.IdChecksum(model.EncodeToIds(Llama2cTokenizerTests.ReadWikiText())),
            Is.EqualTo(Llama2cTokenizerTests.SentencePieceWikiTextChecksum));
    }

    [Test]
    public void SentencePieceModel_CorruptFiles_ThrowModelFormatException()
    {
        byte[] original = File.ReadAllBytes(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"));
        using var dir = new TempDirectory();
        foreach (int cut in new[] { 1, 2, 3, 100, 1001, original.Length / 2 })
        {
            string path = dir.Write($"cut{cut}.model", original[..cut]);
            var error = Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.LoadSentencePieceModel(path), $"cut at {cut}")!;
            Assert.That(error.FilePath, Is.EqualTo(path));
        }
        var random = new Random(7);
        for (int trial = 0; trial < 30; trial++)
        {
            byte[] mutated = (byte[])original.Clone();
            for (int flips = 0; flips < 4; flips++) mutated[random.Next(mutated.Length)] ^= (byte)(1 << random.Next(8));
            string path = dir.Write($"mutated{trial}.model", mutated);
            try { SpmVocabularyTokenizer.LoadSentencePieceModel(path); }
            catch (ModelFormatException e) { Assert.That(e.FilePath, Is.EqualTo(path)); }
        }
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.LoadSentencePieceModel(dir.Write("garbage.model", [0xFF, 0xFF, 0xFF])));
    }

    [Test]
    public void InconsistentVocabulary_ThrowsModelFormatException()
    {
        string[] pieces = ["<unk>", "<s>", "</s>", "\u2581a"];
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.Create("v", pieces, [0f, 0f, 0f], null, 1, 2, 0, true));
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.Create("v", pieces, [0f, 0f, 0f, 0f], [2, 3, 3], 1, 2, 0, true));
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.Create("v", pieces, [0f, 0f, 0f, 0f], [2, 3, 3, 9], 1, 2, 0, true));
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.Create("v", pieces, [0f, 0f, 0f, 0f], null, 4, 2, 0, true));
        Assert.Throws<ModelFormatException>(() => SpmVocabularyTokenizer.Create("v", pieces, [0f, float.NaN, 0f, 0f], null, 1, 2, 0, true));
        string[] tinyPieces = ["<unk>", "<s>", "</s>", "\u2581", "a", "\u2581a"];
        SpmVocabularyTokenizer tiny = SpmVocabularyTokenizer.Create("v", tinyPieces, [0f, 0f, 0f, -1f, -2f, -3f], [2, 3, 3, 1, 1, 1], 1, 2, 0, addBos: false);
        Assert.That(tiny.EncodeToIds("a a"), Is.EqualTo(new[] { 5, 5 }));
        Assert.That(tiny.EncodeToIds("b"), Is.EqualTo(new[] { 3, 0 }), "no byte tokens: the unknown id stands for each byte");
    }

    [Test]
    public void UnsupportedGgufTokenizerModel_ThrowsModelFormatException()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("bert.gguf", new Gguf.GgufTestWriter()
            .Add("tokenizer.ggml.model", 8, w => Gguf.GgufTestWriter.WriteString(w, "bert"))
            .Add("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(1UL); Gguf.GgufTestWriter.WriteString(w, "a"); })
            .Build([]));
        var error = Assert.Throws<ModelFormatException>(() => GgufTokenizerLoader.Load(path))!;
        Assert.That(error.Message, Does.Contain("'bert'"));
        string noMerges = dir.Write("nomerges.gguf", new Gguf.GgufTestWriter()
            .Add("tokenizer.ggml.model", 8, w => Gguf.GgufTestWriter.WriteString(w, "gpt2"))
            .Add("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(1UL); Gguf.GgufTestWriter.WriteString(w, "a"); })
            .Build([]));
        Assert.That(Assert.Throws<ModelFormatException>(() => GgufTokenizerLoader.Load(noMerges))!.Message, Does.Contain("tokenizer.ggml.merges"));
        string llama3 = dir.Write("llama3.gguf", new Gguf.GgufTestWriter()
            .Add("tokenizer.ggml.model", 8, w => Gguf.GgufTestWriter.WriteString(w, "gpt2"))
            .Add("tokenizer.ggml.pre", 8, w => Gguf.GgufTestWriter.WriteString(w, "kimi-k2"))
            .Add("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(1UL); Gguf.GgufTestWriter.WriteString(w, "a"); })
            .Build([]));
        Assert.That(Assert.Throws<ModelFormatException>(() => GgufTokenizerLoader.Load(llama3))!.Message, Does.Contain("'kimi-k2'"));
    }
}
