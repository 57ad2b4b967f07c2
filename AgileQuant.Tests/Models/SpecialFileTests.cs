using System.Diagnostics;
using System.Text;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Embeddings;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Llama2c;
using AgileQuant.Models.Onnx;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models;

/// <summary>
/// Every reader opens files through <see cref="GuardedFile"/>: a symbolic link to <c>/dev/zero</c> (length 0, endless),
/// a FIFO (opening waits for a writer) or a directory put where a model file belongs is refused at once with one line
/// naming the file, and a regular file is read only up to its kind's cap, whatever length it reports.
/// </summary>
[TestFixture]
[Platform(Exclude = "Win", Reason = "FIFOs, /dev/zero and unprivileged symbolic links are Unix features")]
public sealed class SpecialFileTests() : TemporaryDirectoryFixture("aq-special-")
{
    /// <summary>What a test puts at the path a reader is given.</summary>
    public enum SpecialKind
    {
        /// <summary>A symbolic link to <c>/dev/zero</c>.</summary>
        LinkToDevZero,

        /// <summary>A named pipe with no writer.</summary>
        Fifo,

        /// <summary>A directory.</summary>
        Directory,
    }

    /// <summary>One reader: the file name it expects and how to call it on a path.</summary>
    public sealed record Reader(string FileName, Action<string> Read)
    {
        /// <inheritdoc />
        public override string ToString() => FileName;
    }

    private static IEnumerable<Reader> Readers() =>
    [
        new("config.json", path => HfConfig.Load(path)),
        new("tokenizer.json", path => ByteLevelBpeTokenizerLoader.FromTokenizerJson(path)),
        new("vocab.json", path => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(path, Beside(path, "merges.txt", "a b\n"))),
        new("merges.txt", path => ByteLevelBpeTokenizerLoader.FromVocabAndMerges(Beside(path, "vocab.json", """{"a":0,"b":1,"ab":2}"""), path)),
        new("tokenizer_config.json", path => HfTokenizerLoader.LoadFromDirectory(Path.GetDirectoryName(WithTokenizerJson(path))!)),
        new("tokenizer.model", path => HfLlamaTokenizerLoader.LoadModelFile(path)),
        new("tokenizer.bin", path => Llama2cTokenizer.Load(path)),
        new("vocab.txt", path => SentenceEncoder.LoadTokenizer(path)),
        new("model.onnx", path => OnnxModelFile.Read(path)),
        new("model.gguf", path => GgufFile.Read(path)),
        new("model.safetensors", path => SafeTensorsFile.Open(path)),
        new("model.f32.safetensors", path => SafeTensorsFile.Open(path, memoryMap: false)),
        new("quantized.safetensors", path => QuantizedCheckpointReader.Load(path)),
        new("stories.bin", path => Llama2cCheckpoint.Load(path)),
        new("model.safetensors.index.json", path => SafeTensorsCheckpoint.Open(Path.GetDirectoryName(path)!)),
        new("through-the-loader.gguf", path => ModelLoader.Load(path)),
    ];

    private static IEnumerable<TestCaseData> Cases() =>
        from reader in Readers()
        from kind in Enum.GetValues<SpecialKind>()
        // tokenizer_config.json is optional: a directory there is passed over as no file, which reads nothing.
        where !(kind == SpecialKind.Directory && reader.FileName == "tokenizer_config.json")
        select new TestCaseData(reader, kind).SetName($"{kind}_AsThe_{reader.FileName}_IsRefused");

    [TestCaseSource(nameof(Cases))]
    public void SpecialFileIsRefusedOnOneLineWithoutWaiting(Reader reader, SpecialKind kind)
    {
        string path = Path.Combine(Temp.FullPath, reader.FileName);
        Make(path, kind);
        ModelFormatException e = RefusedWithin(TimeSpan.FromSeconds(10), () => reader.Read(path));
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Not.Contain('\n'), "one line");
        Assert.That(e.Message, Does.Contain(reader.FileName));
        if (kind != SpecialKind.Directory) // a directory may also be reported as "no file" by a reader's own existence check
            Assert.That(e.Message, Does.Contain("expected a regular file").And.Contain(kind == SpecialKind.Fifo ? "FIFO" : "character device"));
    }

    [Test]
    public void LinkToARegularFileIsFollowed()
    {
        string target = Temp.Write("real-config.json", Encoding.UTF8.GetBytes("""{"model_type":"llama","hidden_size":8}"""));
        string link = Path.Combine(Temp.FullPath, "config.json");
        File.CreateSymbolicLink(link, target);
        Assert.That(HfConfig.Load(link).ModelType, Is.EqualTo("llama"));
    }

    [Test]
    public void DanglingLinkIsRefusedNamingItsTarget()
    {
        string link = Path.Combine(Temp.FullPath, "model.gguf");
        File.CreateSymbolicLink(link, Path.Combine(Temp.FullPath, "gone.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => GuardedFile.OpenRead(link).Dispose())!;
        Assert.That(e.Message, Does.Contain("found nothing at this path").And.Contain("gone.gguf"));
    }

    [Test]
    public void FileLargerThanItsKindsCapIsRefusedBeforeReading()
    {
        string path = Temp.Write("config.json", new byte[HfConfig.MaxConfigBytes + 1]);
        var e = Assert.Throws<ModelFormatException>(() => HfConfig.Load(path))!;
        Assert.That(e.Message, Does.Contain($"expected at most {HfConfig.MaxConfigBytes} bytes").And.Contain($"found {HfConfig.MaxConfigBytes + 1}"));
    }

    [Test]
    public void ReadingStopsAtTheCapWhateverLengthTheFileReports()
    {
        // procfs files report length 0 but have content: the cap, not the reported length, bounds the read.
        const string path = "/proc/self/status";
        if (!File.Exists(path)) Assert.Ignore("no procfs here");
        Assert.That(new FileInfo(path).Length, Is.Zero, "procfs reports 0 bytes");
        Assert.That(GuardedFile.ReadAllBytes(path, 1 << 20), Is.Not.Empty, "read past the reported length, up to the cap");
        var e = Assert.Throws<ModelFormatException>(() => GuardedFile.ReadAllBytes(path, 16))!;
        Assert.That(e.Message, Does.Contain("expected at most 16 bytes"));
    }

    [Test]
    public void RegularFileIsReadWholeUpToTheCap()
    {
        byte[] bytes = [.. Enumerable.Range(0, 10_000).Select(i => (byte)i)];
        string path = Temp.Write("data.bin", bytes);
        Assert.That(GuardedFile.ReadAllBytes(path, bytes.Length), Is.EqualTo(bytes));
        Assert.Throws<ModelFormatException>(() => GuardedFile.ReadAllBytes(path, bytes.Length - 1));
    }

    /// <summary>Puts <paramref name="kind"/> at <paramref name="path"/>.</summary>
    internal static void Make(string path, SpecialKind kind)
    {
        switch (kind)
        {
            case SpecialKind.LinkToDevZero: File.CreateSymbolicLink(path, "/dev/zero"); break;
            case SpecialKind.Fifo: MakeFifo(path); break;
            default: Directory.CreateDirectory(path); break;
        }
    }

    /// <summary>Creates a named pipe at <paramref name="path"/> with mkfifo(1).</summary>
    internal static void MakeFifo(string path)
    {
        using Process mkfifo = Process.Start(new ProcessStartInfo("mkfifo") { ArgumentList = { path }, UseShellExecute = false })!;
        mkfifo.WaitForExit();
        Assert.That(mkfifo.ExitCode, Is.Zero, "mkfifo " + path);
    }

    /// <summary>Runs <paramref name="read"/> on another thread: it must throw <see cref="ModelFormatException"/> within <paramref name="limit"/>.</summary>
    internal static ModelFormatException RefusedWithin(TimeSpan limit, Action read)
    {
        var task = Task.Factory.StartNew(read, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            if (!task.Wait(limit)) Assert.Fail($"the reader did not return within {limit.TotalSeconds} s (it hangs)");
        }
        catch (AggregateException e) when (e.InnerException is ModelFormatException refused)
        {
            return refused;
        }
        Assert.Fail("expected a ModelFormatException, but the file was read");
        return null!;
    }

    private static string Beside(string path, string name, string content)
    {
        string other = Path.Combine(Path.GetDirectoryName(path)!, name);
        File.WriteAllText(other, content);
        return other;
    }

    private static string WithTokenizerJson(string tokenizerConfigPath) =>
        Beside(tokenizerConfigPath, "tokenizer.json", """{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}""");
}
