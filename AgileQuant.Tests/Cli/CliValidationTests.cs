using System.Text;
using System.Text.Json;
using AgileQuant.Tests.Models.SafeTensors;
using static AgileQuant.Tests.Cli.AgileQuantProcess;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// The command line's rough edges (issue 22): options checked before the model loads or the prompt is echoed, one-line
/// errors with their exit codes, prompt sources, response files, UTF-8, the context limit, generation options and timings.
/// </summary>
[TestFixture]
public class CliValidationTests
{
    private static string MissingModel => Path.Combine(Path.GetTempPath(), "agilequant-no-such-model-" + Guid.NewGuid().ToString("N") + ".bin");

    /// <summary>Asserts the exit code and that stderr holds exactly one line (besides the loader's report) containing <paramref name="expected"/>.</summary>
    internal static void AssertOneLineError((int Code, string Stdout, string Stderr) run, int code, string expected)
    {
        Assert.That(run.Code, Is.EqualTo(code), run.Stderr);
        string[] lines = ErrorLines(run.Stderr).Where(l => !l.StartsWith("Run 'agilequant", StringComparison.Ordinal)).ToArray();
        Assert.That(lines, Has.Length.EqualTo(1), run.Stderr);
        Assert.That(lines[0], Does.StartWith("agilequant: ").And.Contain(expected));
        Assert.That(run.Stderr, Does.Not.Contain("(Parameter").And.Not.Contain("Actual value was").And.Not.Contain("   at "));
    }

    [Test]
    public void BadValuesAreOneLineErrorsFoundBeforeTheModelIsLoadedOrThePromptEchoed()
    {
        string longPrompt = new('a', 100_000);
        // The model does not exist: an error naming the option (not the file) proves the options were checked first.
        var negative = Run("generate", "--model", MissingModel, "--prompt", longPrompt, "--max-tokens", "-5");
        AssertOneLineError(negative, 1, "--max-tokens must be ≥ 0, found -5.");
        Assert.That(negative.Stdout, Is.Empty, "nothing echoed");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--top-p", "1.5"), 1, "--top-p");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--temperature", "-1"), 1, "--temperature");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--min-p", "2"), 1, "--min-p");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--repeat-penalty", "0"), 1, "--repeat-penalty");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--threads", "-2"), 1, "--threads must be ≥ 0");
        AssertOneLineError(Run("chat", "--model", MissingModel, "--frequency-penalty", "9"), 1, "--frequency-penalty");
    }

    [Test]
    public void PromptSourcesAreExclusiveAndOneIsRequired()
    {
        AssertOneLineError(Run("generate", "--model", MissingModel), 2, "a prompt is required");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt", "x", "--prompt-file", "y"), 2, "not both");
        AssertOneLineError(Run("generate", "--model", MissingModel, "--prompt-file", "/no/such/prompt.txt"), 1, "--prompt-file /no/such/prompt.txt does not exist");
    }

    [Test]
    public void InvalidUtf8IsRefusedWithAMessage()
    {
        using var dir = new TemporaryDirectory("aq-cli-");
        string file = Path.Combine(dir.FullPath, "bad.txt");
        File.WriteAllBytes(file, [.. "Once upon "u8, 0xC3, 0x28, .. " a time"u8]);
        AssertOneLineError(Run("generate", "--model", Stories260K, "--prompt-file", file), 1, "is not valid UTF-8 text (invalid byte 0xC3 at offset 10)");
        AssertOneLineError(Run(["generate", "--model", Stories260K, "--prompt", "-"], [0x4F, 0xFF, 0x4B]), 1, "standard input is not valid UTF-8");
    }

    [Test]
    public void PromptFromAFileAndFromStandardInputGenerateAsFromTheCommandLine()
    {
        using var dir = new TemporaryDirectory("aq-cli-");
        string file = Path.Combine(dir.FullPath, "prompt.txt");
        File.WriteAllText(file, "Once upon a time");
        string[] greedy = ["--max-tokens", "16", "--temperature", "0", "--json"];
        string Text((int Code, string Stdout, string Stderr) run)
        {
            Assert.That(run.Code, Is.EqualTo(0), run.Stderr);
            using JsonDocument json = JsonDocument.Parse(run.Stdout);
            return json.RootElement.GetProperty("text").GetString()!;
        }
        string inline = Text(Run(["generate", "--model", Stories260K, "--prompt", "Once upon a time", .. greedy]));
        Assert.That(Text(Run(["generate", "--model", Stories260K, "--prompt-file", file, .. greedy])), Is.EqualTo(inline));
        Assert.That(Text(Run(["generate", "--model", Stories260K, "--prompt", "-", .. greedy], "Once upon a time"u8.ToArray())), Is.EqualTo(inline));
        Assert.That(Text(Run(["generate", "--model", Stories260K, "--prompt-file", "-", .. greedy], "Once upon a time"u8.ToArray())), Is.EqualTo(inline));
    }

    [Test]
    public void ResponseFilesKeepAQuotedPromptWholeAndNeverIncludeThemselves()
    {
        using var dir = new TemporaryDirectory("aq-cli-");
        string args = Path.Combine(dir.FullPath, "args.rsp");
        File.WriteAllText(args, $"# a comment line\n--model \"{Stories260K}\"\n--prompt \"Once upon a time\" --max-tokens 16\n--temperature 0 --json\n");
        var viaFile = Run("generate", "@" + args);
        var direct = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0", "--json");
        Assert.That(viaFile.ExitCode, Is.EqualTo(0), viaFile.Stderr);
        using (JsonDocument a = JsonDocument.Parse(viaFile.Stdout), b = JsonDocument.Parse(direct.Stdout))
        {
            Assert.That(a.RootElement.GetProperty("text").GetString(), Is.EqualTo(b.RootElement.GetProperty("text").GetString()));
            Assert.That(a.RootElement.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(b.RootElement.GetProperty("prompt_tokens").GetInt32()), "the quoted prompt stayed one argument");
        }

        // A response file may name another (to ResponseFiles.MaxDepth deep), never itself.
        string outer = Path.Combine(dir.FullPath, "outer.rsp");
        File.WriteAllText(outer, "@" + args + "\n");
        var nested = Run("generate", "@" + outer);
        Assert.That(nested.ExitCode, Is.EqualTo(0), nested.Stderr);
        using (JsonDocument a = JsonDocument.Parse(nested.Stdout), b = JsonDocument.Parse(direct.Stdout))
            Assert.That(a.RootElement.GetProperty("text").GetString(), Is.EqualTo(b.RootElement.GetProperty("text").GetString()));
        string self = Path.Combine(dir.FullPath, "self.rsp");
        File.WriteAllText(self, "@" + self + "\n");
        var recursive = Run("generate", "@" + self);
        Assert.That(recursive.ExitCode, Is.EqualTo(1), recursive.Stderr);
        Assert.That(recursive.Stderr, Does.Contain("includes itself"));
    }

    [Test]
    public void TooManyThreadsAreCappedWithAWarning()
    {
        var run = Run("generate", "--model", Stories260K, "--prompt", "Hi", "--max-tokens", "2", "--threads", "999", "--json");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        Assert.That(run.Stderr, Does.Contain($"--threads 999 is more than the {Environment.ProcessorCount} processors here; using {Environment.ProcessorCount}"));
    }

    [Test]
    public void APromptLongerThanTheContextKeepsItsEndWithAWarning()
    {
        // stories260K's context is 512 tokens; this prompt is far longer.
        string prompt = string.Concat(Enumerable.Repeat("Tom and Lily went to the park. ", 200));
        var run = Run("generate", "--model", Stories260K, "--prompt", prompt, "--max-tokens", "8", "--json");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        Assert.That(run.Stderr, Does.Contain("but the model's context holds 512: keeping its last 503 tokens after BOS"));
        using JsonDocument json = JsonDocument.Parse(run.Stdout);
        Assert.That(json.RootElement.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(504));
        Assert.That(json.RootElement.GetProperty("generated_tokens").GetInt32(), Is.EqualTo(8));
    }

    [Test]
    public void GenerateReportsLlamaCppTimingsOnStderrAndInJson()
    {
        var run = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "10", "--seed", "1", "--stop", "zzz-never");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        Assert.That(run.Stdout, Does.StartWith("Once upon a time"));
        Assert.That(run.Stderr, Does.Match(@"load time\s+=\s+[\d.]+ ms").And.Match(@"prompt eval time\s+=\s+[\d.]+ ms /\s+5 tokens").And.Match(@"eval time\s+=\s+[\d.]+ ms /\s+9 runs"));
        Assert.That(run.Stderr, Does.Contain("generated 10 tokens, finish: length"));

        var json = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "10", "--json");
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        JsonElement root = doc.RootElement;
        foreach (string field in new[] { "load_seconds", "prompt_tokens", "prompt_tokens_per_second", "generated_tokens", "generation_tokens_per_second" })
            Assert.That(root.GetProperty(field).GetDouble(), Is.GreaterThan(0), field);
        Assert.That(root.GetProperty("finish").GetString(), Is.EqualTo("length"));
    }

    [Test]
    public void TheStoryEndsAtBosWithFinishStop()
    {
        // Seed 3 with the default sampling writes one story and then BOS (id 1), where llama2.c stops too.
        var run = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "500", "--seed", "3", "--json");
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        using JsonDocument doc = JsonDocument.Parse(run.Stdout);
        Assert.That(doc.RootElement.GetProperty("finish").GetString(), Is.EqualTo("stop"));
        Assert.That(doc.RootElement.GetProperty("generated_tokens").GetInt32(), Is.LessThan(500));
        Assert.That(doc.RootElement.GetProperty("text").GetString(), Does.Not.Contain("Once upon a time"), "the text does not run on into a second story");
    }

    [Test]
    public void QuantizeChecksTheOutputFirstAndItsCheckpointGeneratesAlone()
    {
        using var dir = new TemporaryDirectory("aq-quantize-");
        string unwritable = Path.Combine(dir.FullPath, "no-such-folder", "q.safetensors");
        var refused = Run("quantize", "--model", Stories260K, "--config", "W8A8", "--output", unwritable);
        AssertOneLineError(refused, 1, $"--output {unwritable}: the folder");
        Assert.That(refused.Stderr, Does.Not.Contain(".tmp").And.Not.Contain("loaded "), "refused before loading, naming no temporary file");

        // A folder of its own, without the tokenizer file beside it: the checkpoint must carry it.
        string output = Path.Combine(dir.FullPath, "q.safetensors");
        var quantized = Run("quantize", "--model", Stories260K, "--config", "W4A8-GPTQ", "--calib-text", SharedAssets.InRepo("assets/text/tinystories_valid_first100.txt"),
            "--calib-docs", "4", "--output", output);
        Assert.That(quantized.ExitCode, Is.EqualTo(0), quantized.Stderr);
        Assert.That(quantized.Stderr, Does.Not.Contain("--eval-skip-docs").And.Not.Contain("warning"));

        string[] greedy = ["--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--json"];
        var alone = Run(["generate", "--model", output, .. greedy]);
        var withTokenizer = Run(["generate", "--model", output, "--tokenizer", SharedAssets.InRepo("assets/models/stories260K/tok512.bin"), .. greedy]);
        Assert.That(alone.ExitCode, Is.EqualTo(0), alone.Stderr);
        Assert.That(withTokenizer.ExitCode, Is.EqualTo(0), withTokenizer.Stderr);
        using JsonDocument a = JsonDocument.Parse(alone.Stdout), b = JsonDocument.Parse(withTokenizer.Stdout);
        Assert.That(a.RootElement.GetProperty("text").GetString(), Is.Not.Empty.And.EqualTo(b.RootElement.GetProperty("text").GetString()));
    }

    [Test]
    public void HelpTextsNameOnlyTheCommandsOwnOptions()
    {
        var quantize = Run("quantize", "--help");
        Assert.That(quantize.ExitCode, Is.EqualTo(0));
        Assert.That(quantize.Stdout, Does.Not.Contain("--eval-skip-docs").And.Not.Contain("--text"));
        Assert.That(quantize.Stdout, Does.Contain("carries the model's tokenizer"));
        var generate = Run("generate", "--help");
        foreach (string option in new[] { "--prompt-file", "--min-p", "--repeat-penalty", "--frequency-penalty", "--presence-penalty", "--stop", "--seed" })
            Assert.That(generate.Stdout, Does.Contain(option));
        Assert.That(Run("chat", "--help").Stdout, Does.Contain("/reset").And.Contain("--system"));
        Assert.That(Run("serve", "--help").Stdout, Does.Contain("/v1/chat/completions").And.Contain("--port"));
    }
}
