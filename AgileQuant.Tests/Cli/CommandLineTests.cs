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
}
