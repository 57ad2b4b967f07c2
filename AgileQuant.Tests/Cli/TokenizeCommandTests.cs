using System.Text.Json;
using AgileQuant.Tests.Models.Tokenizers;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// <c>agilequant tokenize</c> as a process: every vocabulary with test vectors reproduces its expected ids through the
/// command line (all inputs of a vocabulary in one run, one <c>{"ids": [...]}</c> line each), plus BOS, special tokens,
/// the other tokenizer formats and the one-line errors.
/// </summary>
[TestFixture]
public class TokenizeCommandTests
{
    private static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => CommandLineTests.Run(args);

    private static int[] Ids(string jsonLine)
    {
        using JsonDocument json = JsonDocument.Parse(jsonLine);
        Assert.That(json.RootElement.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "ids" }));
        return json.RootElement.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();
    }

    private static void AssertCliReproduces(string model, List<(string Text, int[] Ids)> vectors)
    {
        var args = new List<string> { "tokenize", "--model", model, "--json" };
        foreach ((string text, _) in vectors) args.AddRange(["--text", text]);
        (int code, string stdout, string stderr) = Run([.. args]);
        Assert.That(code, Is.EqualTo(0), stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(vectors.Count));
        for (int i = 0; i < vectors.Count; i++)
            Assert.That(Ids(lines[i]), Is.EqualTo(vectors[i].Ids), $"input {i}: \"{vectors[i].Text}\"");
    }

    [TestCaseSource(typeof(TokenizerVectorTests), nameof(TokenizerVectorTests.GgufVocabularies))]
    public void GgufVocabulary_ReproducesItsVectorsThroughTheCli(string name) =>
        AssertCliReproduces(TokenizerVectorTests.GgufPath(name), Models.Tokenizers.GgufTokenizerLoaderTests.ReadVectors(name));

    [TestCaseSource(typeof(TokenizerVectorTests), nameof(TokenizerVectorTests.HfTokenizers))]
    public void HfDirectory_ReproducesItsVectorsThroughTheCli(string name)
    {
        using var dir = new TempDirectory();
        AssertCliReproduces(TokenizerVectorTests.UnpackHf(name, dir.Path), TokenizerVectorTests.HfVectors(name));
    }

    [Test]
    public void AddBosPrependsTheDeclaredBos_ParseSpecialMatchesSpecialTokens()
    {
        string llama3 = TokenizerVectorTests.GgufPath("llama-bpe");
        (int code, string stdout, string stderr) = Run("tokenize", "--model", llama3, "--text", "Hello world", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(Ids(stdout.Trim()), Is.EqualTo(new[] { 9906, 1917 }), "no BOS by default, though the GGUF adds one");
        (_, stdout, _) = Run("tokenize", "--model", llama3, "--text", "Hello world", "--json", "--add-bos");
        Assert.That(Ids(stdout.Trim()), Is.EqualTo(new[] { 128000, 9906, 1917 }));
        (_, stdout, _) = Run("tokenize", "--model", llama3, "--text", "<|eot_id|>", "--json");
        Assert.That(Ids(stdout.Trim()), Has.Length.GreaterThan(1), "special tokens are text unless asked");
        (_, stdout, _) = Run("tokenize", "--model", llama3, "--text", "<|eot_id|>", "--json", "--parse-special");
        Assert.That(Ids(stdout.Trim()), Is.EqualTo(new[] { 128009 }));
        (_, stdout, _) = Run("tokenize", "--model", llama3, "--text", "Hello world");
        Assert.That(stdout.Trim(), Is.EqualTo("9906 1917"), "without --json: the ids on one line");
    }

    [Test]
    public void TextFileAndOtherTokenizerFormats()
    {
        using var dir = new TempDirectory();
        string text = dir.Write("prompt.txt", "Once upon a time"u8.ToArray());
        // llama2.c's tokenizer of stories260K: the golden prompt ids of assets/README.md (llama2.c's own encode()).
        (int code, string stdout, string stderr) = Run("tokenize", "--model", SharedAssets.InRepo("assets/models/stories260K/tok512.bin"),
            "--text-file", text, "--json", "--add-bos");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(Ids(stdout.Trim()), Is.EqualTo(new[] { 1, 403, 407, 261, 378 }));
        (code, stdout, stderr) = Run("tokenize", "--model", SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"), "--text", "Hello world", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(Ids(stdout.Trim()), Is.EqualTo(new[] { 15043, 3186 }));
    }

    [Test]
    public void BadInputsAreOneLineErrors()
    {
        string gguf = TokenizerVectorTests.GgufPath("gpt-2");
        (int code, _, string stderr) = Run("tokenize", "--model", gguf, "--json");
        Assert.That((code, stderr.Trim().Split('\n').Length), Is.EqualTo((1, 1)));
        Assert.That(stderr, Does.Contain("--text"));
        (code, _, stderr) = Run("tokenize", "--model", gguf, "--text", "a", "--text-file", "b.txt");
        Assert.That(code, Is.EqualTo(1));
        string missing = Path.Combine(Path.GetTempPath(), "agilequant-no-such-vocab.gguf");
        (code, _, stderr) = Run("tokenize", "--model", missing, "--text", "a");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.StartWith("agilequant: error: ").And.Contain(missing).And.Not.Contain("   at "));
        (code, _, stderr) = Run("tokenize", "--model", TokenizerVectorTests.GgufPath("gpt-2"), "--text", "a", "--add-bos");
        Assert.That(code, Is.EqualTo(0), "gpt-2 declares <|endoftext|> as its BOS: " + stderr);
        (code, _, _) = Run("tokenize", "--text", "a");
        Assert.That(code, Is.EqualTo(2), "--model is required");
    }
}
