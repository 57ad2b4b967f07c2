using System.Diagnostics;
using System.Text.Json;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// The <c>agilequant</c> tool as scripts see it, run as a process (stdout and stderr redirected, so not a terminal):
/// exit codes, one-line errors without stack traces unless --verbose, JSON on stdout with no progress noise.
/// </summary>
[TestFixture]
public class CommandLineTests
{
    private static string Stories260K => SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");
    private static string StoriesText => SharedAssets.InRepo("assets/text/tinystories_valid_first100.txt");

    internal static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => RunTool(null, 120, args);

    /// <summary>Runs the tool built beside the tests, with extra environment variables; fails the test after <paramref name="timeoutSeconds"/>.</summary>
    internal static (int ExitCode, string Stdout, string Stderr) RunTool(IReadOnlyDictionary<string, string>? environment, int timeoutSeconds, params string[] args)
    {
        string tool = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "agilequant.exe" : "agilequant");
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"agilequant {string.Join(' ', args)} did not finish within {timeoutSeconds} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Test]
    public void HelpDocumentsTheExitCodes()
    {
        (int code, string stdout, _) = Run("--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("Exit codes:").And.Contain("130 cancelled").And.Contain("70  internal error"));
    }

    [Test]
    public void AnUnknownOptionExitsWithTwoAndNamesIt()
    {
        (int code, string stdout, string stderr) = Run("info", "--no-such-option");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Contain("--no-such-option").And.Contain("agilequant --help"));
    }

    [Test]
    public void AMissingModelIsOneLineWithoutStackTraceUnlessVerbose()
    {
        string missing = Path.Combine(Path.GetTempPath(), "agilequant-no-such-model.bin");
        (int code, _, string stderr) = Run("generate", "--model", missing, "--prompt", "Hi");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stderr, Does.StartWith("agilequant: error: ").And.Contain(missing));
        Assert.That(stderr, Does.Not.Contain("   at "));

        (int verboseCode, _, string verbose) = Run("generate", "--model", missing, "--prompt", "Hi", "--verbose");
        Assert.That(verboseCode, Is.EqualTo(1));
        Assert.That(verbose, Does.Contain("ModelFormatException").And.Contain("   at "), "--verbose adds the stack trace");
    }

    [Test]
    public void PerplexityJsonIsOneObjectOnStdoutAndNoProgressBarOnStderr()
    {
        (int code, string stdout, string stderr) = Run("perplexity", "--model", Stories260K, "--text", StoriesText, "--eval-docs", "3", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        string[] lines = stdout.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1));
        using JsonDocument json = JsonDocument.Parse(lines[0]);
        Assert.That(json.RootElement.GetProperty("ppl").GetDouble(), Is.GreaterThan(1));
        Assert.That(json.RootElement.GetProperty("sequences").GetInt32(), Is.EqualTo(3));
        Assert.That(stderr, Does.Not.Contain("[#").And.Not.Contain("...."), "progress bars are hidden off a terminal and with --json");
    }

    [Test]
    public void GenerateAndInfoJsonParse()
    {
        (int code, string stdout, string stderr) = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "8", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using (JsonDocument json = JsonDocument.Parse(stdout))
        {
            Assert.That(json.RootElement.GetProperty("generated_tokens").GetInt32(), Is.InRange(1, 8));
            Assert.That(json.RootElement.GetProperty("text").GetString(), Is.Not.Empty);
        }

        (int infoCode, string info, _) = Run("info", "--json");
        Assert.That(infoCode, Is.EqualTo(0));
        using JsonDocument infoJson = JsonDocument.Parse(info);
        Assert.That(infoJson.RootElement.GetProperty("kernels").GetArrayLength(), Is.GreaterThan(0));
    }

    [Test]
    public void ExportGgufWritesAModelThatGeneratesTheSameGreedyText()
    {
        string directory = Directory.CreateTempSubdirectory("agilequant-export-").FullName;
        try
        {
            string gguf = Path.Combine(directory, "stories260K.f32.gguf");
            (int code, string stdout, string stderr) = Run("export-gguf", "--model", Stories260K, "--type", "F32", "--output", gguf, "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            using (JsonDocument json = JsonDocument.Parse(stdout))
            {
                Assert.That(json.RootElement.GetProperty("vocabulary").GetString(), Is.EqualTo("sentencepiece"));
                Assert.That(json.RootElement.GetProperty("bytes").GetInt64(), Is.EqualTo(new FileInfo(gguf).Length));
            }
            Assert.That(File.Exists(gguf + ".partial"), Is.False);

            string[] greedy = ["--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--json"];
            (int sourceCode, string source, string sourceErr) = Run(["generate", "--model", Stories260K, .. greedy]);
            (int exportCode, string exported, string exportErr) = Run(["generate", "--model", gguf, .. greedy]);
            Assert.That(sourceCode, Is.EqualTo(0), sourceErr);
            Assert.That(exportCode, Is.EqualTo(0), exportErr);
            using JsonDocument a = JsonDocument.Parse(source), b = JsonDocument.Parse(exported);
            Assert.That(b.RootElement.GetProperty("text").GetString(), Is.EqualTo(a.RootElement.GetProperty("text").GetString()));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public void ExportGgufIntoAMissingDirectoryIsAOneLineError()
    {
        string target = Path.Combine(Path.GetTempPath(), "agilequant-no-such-dir-" + Guid.NewGuid().ToString("N"), "x.gguf");
        (int code, _, string stderr) = Run("export-gguf", "--model", Stories260K, "--output", target);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("does not exist"));
        Assert.That(stderr, Does.Not.Contain("   at "));
    }

    [Test]
    public void APromptLongerThanTheContextIsAOneLineErrorNamingTheContextLength([Values("auto", "q4")] string kvType)
    {
        (int code, string stdout, string stderr) = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time there was a little girl named Lily.",
            "--context", "8", "--kv-type", kvType, "--max-tokens", "4");
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty.Or.EqualTo("Once upon a time there was a little girl named Lily."), "nothing generated");
        string[] errors = stderr.Split('\n').Where(l => l.StartsWith("agilequant: error: ", StringComparison.Ordinal)).ToArray();
        Assert.That(errors, Has.Length.EqualTo(1), stderr);
        Assert.That(errors[0], Does.Contain("context length is 8"));
        Assert.That(stderr, Does.Not.Contain("   at "));
    }

    [Test]
    public void VerboseReportsTheKvCacheTypeAndItsBytesPerToken()
    {
        (int code, _, string stderr) = Run("generate", "--model", Stories260K, "--prompt", "Once upon a time", "--max-tokens", "4", "--kv-type", "q8", "--context", "64", "--verbose");
        Assert.That(code, Is.EqualTo(0), stderr);
        // stories260K: 5 layers, 4 key/value heads of 8; q8 keys: 8 int8 + an fp16 scale per channel of 32 tokens, values: 8 int8 + one fp16 scale
        string line = stderr.Split('\n').Single(l => l.StartsWith("KV cache: q8", StringComparison.Ordinal));
        Assert.That(line, Does.Contain("context of 64 tokens").And.Contain("allocated as the context grows"));
        Assert.That(line, Does.Contain($"{5 * 4 * (8 + 2 * 8 / 32.0 + 8 + 2):N0} bytes per token"));
    }

    [Test]
    public void BenchEndToEndReportsTheKvMemoryHeldAfterThePrefill()
    {
        string directory = Directory.CreateTempSubdirectory("agilequant-bench-kv-").FullName;
        try
        {
            long Held(string kvType)
            {
                (int code, string stdout, string stderr) = Run("bench", "e2e", "--shape", "small-1l", "--configs", "W4A8", "--prefill", "256", "--decode", "2",
                    "--repeats", "1", "--threads", "1", "--kv-type", kvType, "--context", "600", "--models", directory, "--json");
                Assert.That(code, Is.EqualTo(0), stderr);
                using JsonDocument json = JsonDocument.Parse(stdout.Trim().Split('\n').Single());
                Assert.That(json.RootElement.GetProperty("context_length").GetInt32(), Is.EqualTo(600));
                Assert.That(json.RootElement.GetProperty("kv_cache").GetString(), Does.StartWith(kvType));
                return json.RootElement.GetProperty("kv_cache_bytes_after_longest_prefill").GetInt64();
            }
            long f32 = Held("f32"), q4 = Held("q4");
            // small: 1 layer, 8 key/value heads of 64; 256 tokens of f32 keys and values at least, and q4 (88 bytes per token
            // and head in one page of 256 slots) well under a third of that
            Assert.That(f32, Is.GreaterThanOrEqualTo(256L * 8 * 64 * 2 * sizeof(float)));
            Assert.That(q4, Is.GreaterThan(0).And.LessThan(f32 / 3));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
