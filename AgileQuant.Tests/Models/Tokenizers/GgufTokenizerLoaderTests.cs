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
    internal static List<(string Text, int[] Ids)> ReadVectors(string vocabName)
    {
        string inp = File.ReadAllText(SharedAssets.Require($"assets/tokenizers/ggml-vocab/ggml-vocab-{vocabName}.gguf.inp"), Encoding.UTF8);
        string[] outLines = File.ReadAllText(SharedAssets.Require($"assets/tokenizers/ggml-vocab/ggml-vocab-{vocabName}.gguf.out")).Split('\n');
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
}
