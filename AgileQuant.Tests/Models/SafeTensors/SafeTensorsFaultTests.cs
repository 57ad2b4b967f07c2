using System.Runtime.InteropServices;
using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>Faults around a mapped safetensors file: concurrent and repeated disposal, and a file truncated while open.</summary>
[TestFixture]
public sealed partial class SafeTensorsFaultTests() : TemporaryDirectoryFixture("aq-st-fault-")
{
    private string WriteTiny(string name)
    {
        var writer = new SafeTensorsWriter();
        writer.AddFloat32("a", [64], Enumerable.Range(0, 64).Select(i => (float)i).ToArray());
        writer.AddFloat32("b", [4096], new float[4096]);
        string path = Path.Combine(Temp.FullPath, name);
        using (FileStream stream = File.Create(path)) writer.Write(stream);
        return path;
    }

    [Test]
    public void DisposeIsIdempotentAndThreadSafe()
    {
        string path = WriteTiny("model.safetensors");
        for (int trial = 0; trial < 50; trial++)
        {
            var file = SafeTensorsFile.Open(path);
            var checkpoint = SafeTensorsCheckpoint.Open(path);
            using var start = new Barrier(8);
            Thread[] threads = Enumerable.Range(0, 8).Select(_ => new Thread(() =>
            {
                start.SignalAndWait();
                file.Dispose();
                checkpoint.Dispose();
                file.Dispose();
            })).ToArray();
            foreach (Thread thread in threads) thread.Start();
            foreach (Thread thread in threads) thread.Join();
            Assert.Throws<ObjectDisposedException>(() => file.ReadFloat32("a"));
            Assert.Throws<ObjectDisposedException>(() => checkpoint.ReadFloat32("a"));
        }
    }

    [LibraryImport("libc", EntryPoint = "truncate", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Truncate(string path, long length);

    [Test]
    [Platform("Linux")]
    public void FileTruncatedWhileMappedIsReportedAtReadInsteadOfFaulting()
    {
        string path = WriteTiny("model.safetensors");
        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.ReadFloat32("a")[63], Is.EqualTo(63f));
        // Another process (truncate(2) ignores .NET's share modes) cuts the file: touching the lost pages would raise SIGBUS.
        Assert.That(Truncate(path, file.FileLength / 2), Is.Zero, "truncate(2) failed");
        var e = Assert.Throws<ModelFormatException>(() => file.ReadFloat32("b"))!;
        Assert.That(e.Message, Does.Contain("truncated while open").And.Contain(path));
        Assert.Throws<ModelFormatException>(() => _ = file.GetBytes("a").Length);
        // Reopening sees the short file and refuses it at open.
        Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path).Dispose());
    }

    [Test]
    [Platform("Linux")]
    public void FileDeletedWhileMappedStaysReadableUntilDisposed()
    {
        string path = WriteTiny("model.safetensors");
        using var file = SafeTensorsFile.Open(path);
        // On Linux the mapping keeps the inode alive: the data stays valid after unlink (Windows refuses the delete instead).
        File.Delete(path);
        Assert.That(File.Exists(path), Is.False);
        Assert.That(file.ReadFloat32("a")[63], Is.EqualTo(63f));
        Assert.That(file.ReadFloat32("b"), Has.Length.EqualTo(4096));
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadFloat32("a"));
        Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
    }
}
