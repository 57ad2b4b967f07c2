using System.Text;
using System.Text.Json;
using AgileQuant.Cli;
using AgileQuant.Core;
using AgileQuant.Intrinsics;
using AgileQuant.Tests.Models;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// Hostile command lines refused with exit code 1 and one line on stderr (never a stack overflow, an out-of-memory exit
/// 70 or a hang): response files that include themselves or nest too deep, absurd thread counts (capped with a warning),
/// special files named as inputs.
/// </summary>
[TestFixture]
public sealed class HostileCommandLineTests() : TemporaryDirectoryFixture("aq-cli-hostile-")
{
    private static string Stories260K => SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");
    private static string Tok512 => SharedAssets.InRepo("assets/models/stories260K/tok512.bin");

    // One error line, last on stderr (after any "loaded ..." status line), and no stack trace.
    private static void AssertOneLineError(int code, string stderr, params string[] fragments)
    {
        Assert.That(code, Is.EqualTo(1), stderr);
        string[] lines = stderr.Trim().Split('\n');
        Assert.That(lines.Count(l => l.StartsWith("agilequant: ", StringComparison.Ordinal)), Is.EqualTo(1), stderr);
        Assert.That(lines[^1], Does.StartWith("agilequant: error: "), stderr);
        Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace");
        foreach (string fragment in fragments) Assert.That(lines[^1], Does.Contain(fragment));
    }

    [Test]
    public void ResponseFileThatIncludesItselfIsRefused()
    {
        string path = Path.Combine(Temp.FullPath, "args.rsp");
        File.WriteAllText(path, "info\n@" + path + "\n");
        (int code, _, string stderr) = CommandLineTests.Run("@" + path);
        AssertOneLineError(code, stderr, "args.rsp includes itself", "@args.rsp → @args.rsp");
    }

    [Test]
    public void ResponseFilesThatIncludeEachOtherAreRefused()
    {
        string a = Path.Combine(Temp.FullPath, "a.rsp"), b = Path.Combine(Temp.FullPath, "b.rsp");
        File.WriteAllText(a, "@" + b);
        File.WriteAllText(b, "@" + a);
        (int code, _, string stderr) = CommandLineTests.Run("@" + a);
        AssertOneLineError(code, stderr, "a.rsp includes itself", "@a.rsp → @b.rsp → @a.rsp");
    }

    [Test]
    public void ResponseFilesNestedTooDeepAreRefused()
    {
        int files = ResponseFiles.MaxDepth + 1;
        for (int i = 0; i < files; i++)
            File.WriteAllText(Path.Combine(Temp.FullPath, $"f{i}.rsp"), i + 1 < files ? "@" + Path.Combine(Temp.FullPath, $"f{i + 1}.rsp") : "info");
        (int code, _, string stderr) = CommandLineTests.Run("@" + Path.Combine(Temp.FullPath, "f0.rsp"));
        AssertOneLineError(code, stderr, $"nested more than {ResponseFiles.MaxDepth} files deep");
    }

    [Test]
    public void ResponseFilesNestedUpToTheLimitAreExpanded()
    {
        for (int i = 0; i < ResponseFiles.MaxDepth; i++)
            File.WriteAllText(Path.Combine(Temp.FullPath, $"f{i}.rsp"), i + 1 < ResponseFiles.MaxDepth ? "@" + Path.Combine(Temp.FullPath, $"f{i + 1}.rsp") : "info --json");
        (int code, string stdout, string stderr) = CommandLineTests.Run("@" + Path.Combine(Temp.FullPath, "f0.rsp"));
        Assert.That(code, Is.EqualTo(0), stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.That(json.RootElement.GetProperty("processors").GetInt32(), Is.GreaterThan(0));
    }

    [Test]
    public void ResponseFileNamingAFileManyTimesIsRefusedPastTheReadLimit()
    {
        // Each file names the next 40 times, 3 deep: 40^3 reads of empty files would expand to nothing, slowly.
        string leaf = Temp.Write("leaf.rsp", []);
        string middle = Path.Combine(Temp.FullPath, "middle.rsp"), top = Path.Combine(Temp.FullPath, "top.rsp");
        File.WriteAllText(middle, string.Join(' ', Enumerable.Repeat("@" + leaf, 40)));
        File.WriteAllText(top, string.Join(' ', Enumerable.Repeat("@" + middle, 40)));
        (int code, _, string stderr) = CommandLineTests.Run("info", "@" + top);
        AssertOneLineError(code, stderr, $"more than {ResponseFiles.MaxFilesRead} response files");
    }

    [Test]
    public void QuotedPromptInAResponseFileStaysOneArgument()
    {
        const string prompt = "Once upon a time,  there was a tiny model";
        (int direct, string expected, string directErrors) = CommandLineTests.Run("tokenize", "--model", Tok512, "--text", prompt);
        Assert.That(direct, Is.EqualTo(0), directErrors);

        string path = Path.Combine(Temp.FullPath, "prompt.rsp");
        File.WriteAllText(path, $"# a comment line\ntokenize --model \"{Tok512}\"\n--text \"{prompt}\"\n");
        (int code, string stdout, string stderr) = CommandLineTests.Run("@" + path);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout.Trim().Split('\n'), Has.Length.EqualTo(1), "one --text, so one line of ids");
        Assert.That(stdout, Is.EqualTo(expected));
    }

    [Test]
    public void ResponseFileNamingAPathWithANulByteIsOneLine()
    {
        // Found by ResponseFileFuzzTests: Path.GetFullPath threw ArgumentException, which the tool did not catch.
        string path = Temp.Write("nul.rsp", Encoding.UTF8.GetBytes("info @bad\0name\n"));
        var e = Assert.Throws<AgileQuantException>(() => ResponseFiles.Expand(["@" + path]))!;
        Assert.That(e.Message, Does.Contain("'bad\\u0000name' is not a valid path").And.Contain("named in " + path).And.Not.Contain('\n'));
    }

    [Test]
    public void MissingResponseFileIsOneLine()
    {
        string missing = Path.Combine(Temp.FullPath, "missing.rsp");
        (int code, _, string stderr) = CommandLineTests.Run("info", "@" + missing);
        AssertOneLineError(code, stderr, "Response file not found", missing);
    }

    [TestCase(100_000)]
    [TestCase(int.MaxValue)]
    public void AbsurdThreadCountIsCappedWithAWarning(int threads)
    {
        (int code, string stdout, string stderr) = CommandLineTests.Run("info", "--threads", threads.ToString(), "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain($"warning: --threads {threads} is more than the {Environment.ProcessorCount} processors here; using {Environment.ProcessorCount}"));
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.That(json.RootElement.GetProperty("threads").GetInt32(), Is.EqualTo(Environment.ProcessorCount));
    }

    [Test]
    public void AbsurdThreadCountRunsTheModelOnCappedThreads()
    {
        (int code, string stdout, string stderr) = CommandLineTests.Run("generate", "--model", Stories260K, "--prompt", "Once", "--max-tokens", "2", "--threads", "100000");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("warning: --threads 100000"));
        Assert.That(stdout, Is.Not.Empty);
    }

    [Test]
    [Platform(Exclude = "Win", Reason = "FIFOs and /dev/zero are Unix features")]
    public void LinkToDevZeroAsTheTextIsRefused()
    {
        string text = Path.Combine(Temp.FullPath, "text.txt");
        File.CreateSymbolicLink(text, "/dev/zero");
        (int code, _, string stderr) = CommandLineTests.Run("perplexity", "--model", Stories260K, "--text", text);
        AssertOneLineError(code, stderr, "text.txt", "expected a regular file, found a character device", "/dev/zero");
    }

    [Test]
    [Platform(Exclude = "Win", Reason = "FIFOs are a Unix feature")]
    public void FifoAsTheModelIsRefusedWithoutWaitingForAWriter()
    {
        string model = Path.Combine(Temp.FullPath, "model.gguf");
        SpecialFileTests.MakeFifo(model);
        (int code, _, string stderr) = CommandLineTests.Run("generate", "--model", model, "--prompt", "Hi");
        AssertOneLineError(code, stderr, "model.gguf", "FIFO");
    }

    [Test]
    [Platform(Exclude = "Win", Reason = "FIFOs are a Unix feature")]
    public void FifoAsTheResponseFileIsRefused()
    {
        string path = Path.Combine(Temp.FullPath, "args.rsp");
        SpecialFileTests.MakeFifo(path);
        (int code, _, string stderr) = CommandLineTests.Run("@" + path);
        AssertOneLineError(code, stderr, "args.rsp", "FIFO");
    }
}
