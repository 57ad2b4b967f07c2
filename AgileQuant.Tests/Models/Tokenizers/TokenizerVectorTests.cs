using System.IO.Compression;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

/// <summary>
/// Every vocabulary with test vectors in ../shared/assets/tokenizers: llama.cpp's ggml-vocab GGUFs (their .out made by
/// Hugging Face's tokenizers) and the four Hugging Face tokenizer.json files (vectors.out from transformers.js, checked
/// against llama.cpp and HF Python as assets/README.md describes). Ids without BOS, special tokens not parsed.
/// </summary>
public class TokenizerVectorTests
{
    /// <summary>The ggml-vocab files with .inp/.out vectors.</summary>
    public static readonly string[] GgufVocabularies =
        ["bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "llama-bpe", "llama-spm", "mpt", "phi-3", "qwen2", "refact", "starcoder"];

    /// <summary>The Hugging Face tokenizers under hf/ with vectors.</summary>
    public static readonly string[] HfTokenizers = ["llama3_1", "qwen3", "gemma3", "deepseek_v3"];

    internal static string GgufPath(string name) => SharedAssets.Require($"assets/tokenizers/ggml-vocab/ggml-vocab-{name}.gguf");

    internal static List<(string Text, int[] Ids)> HfVectors(string name) =>
        GgufTokenizerLoaderTests.ReadVectorFiles($"assets/tokenizers/hf/{name}/vectors.inp", $"assets/tokenizers/hf/{name}/vectors.out");

    /// <summary>Unpacks hf/<paramref name="name"/> (tokenizer.json.gz and tokenizer_config.json) into <paramref name="directory"/>.</summary>
    internal static string UnpackHf(string name, string directory)
    {
        string source = SharedAssets.Require($"assets/tokenizers/hf/{name}/tokenizer.json.gz");
        using (FileStream input = File.OpenRead(source))
        using (var gzip = new GZipStream(input, CompressionMode.Decompress))
        using (FileStream output = File.Create(Path.Combine(directory, "tokenizer.json")))
            gzip.CopyTo(output);
        File.Copy(SharedAssets.Require($"assets/tokenizers/hf/{name}/tokenizer_config.json"), Path.Combine(directory, "tokenizer_config.json"));
        return directory;
    }

    internal static void AssertVectors(Tokenizer tokenizer, List<(string Text, int[] Ids)> vectors)
    {
        Assert.That(vectors, Has.Count.GreaterThan(40));
        var failures = new List<string>();
        foreach ((string text, int[] expected) in vectors)
        {
            int[] actual = tokenizer.EncodeToIds(text).ToArray();
            if (!actual.SequenceEqual(expected))
                failures.Add($"\"{text.Replace("\n", "\\n").Replace("\t", "\\t")}\"\n  expected {string.Join(' ', expected)}\n  actual   {string.Join(' ', actual)}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    [TestCaseSource(nameof(GgufVocabularies))]
    public void GgufVocabulary_ReproducesLlamaCppVectors(string name) =>
        AssertVectors(GgufTokenizerLoader.Load(GgufPath(name), addBos: false), GgufTokenizerLoaderTests.ReadVectors(name));

    [TestCaseSource(nameof(HfTokenizers))]
    public void HfTokenizerJson_ReproducesItsVectors(string name)
    {
        using var dir = new TempDirectory();
        Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(UnpackHf(name, dir.Path), addBos: false);
        AssertVectors(tokenizer, HfVectors(name));
    }

    [TestCase("llama3_1", "llama-bpe", "ggml-vocab-llama-bpe")]
    [TestCase("qwen3", "qwen2", "ggml-vocab-qwen2")]
    public void HfTokenizerJsonAndItsGguf_GiveTheSameIds(string name, string preTokenizer, string gguf)
    {
        // The GGUFs were built from these tokenizer.json files (assets/README.md); one catalog row serves both.
        Assert.That(GgufTokenizerLoader.PreTokenizerOf(AgileQuant.Models.Gguf.GgufFile.Read(GgufPath(gguf["ggml-vocab-".Length..]))).Name, Is.EqualTo(preTokenizer));
        using var dir = new TempDirectory();
        Tokenizer json = HfTokenizerLoader.LoadFromDirectory(UnpackHf(name, dir.Path), addBos: false);
        Tokenizer ggufTokenizer = GgufTokenizerLoader.Load(GgufPath(gguf["ggml-vocab-".Length..]), addBos: false);
        foreach ((string text, _) in HfVectors(name).Concat([("Cửa Việt — 123456789 \U0001D7CF\U0001D7D0\U0001D7D1\U0001D7D2 \U0001D400bc", Array.Empty<int>())]))
            Assert.That(json.EncodeToIds(text), Is.EqualTo(ggufTokenizer.EncodeToIds(text)), text);
    }
}
