using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models;

/// <summary>
/// Mapped file pages are handed back once a tensor is converted (Linux): the mapping's resident bytes, read from
/// /proc/self/smaps, fall to about nothing, and the tensor still reads back the same values afterwards.
/// </summary>
public class MappedFilePagesTests
{
    private const int Side = 1024; // a (1024, 1024) FP32 tensor: 4 MiB, far above the page rounding at its ends
    private const long TensorBytes = (long)Side * Side * sizeof(float);
    private const long RoundingSlack = 64 << 10;

    [Test]
    public void Gguf_ReleasedTensor_LeavesResidentSetAndReadsBackTheSameBytes()
    {
        Assume.That(OperatingSystem.IsLinux(), "resident pages of a mapping are read from /proc/self/smaps");
        using var temp = new TemporaryDirectory("aq-pages-");
        float[] values = Values();
        var writer = new GgufWriter();
        writer.AddTensor("t", [Side, Side], GgmlType.F32, s => s.Write(MemoryMarshal.AsBytes(values.AsSpan())));
        string path = Path.Combine(temp.FullPath, "t.gguf");
        writer.Write(path);
        GgufFile file = GgufFile.Read(path);
        GgufTensorInfo tensor = file.FindTensor("t")!;

        using GgufTensorData data = GgufTensorData.Open(file);
        Assert.That(Sum(data, tensor), Is.EqualTo(values.Sum(v => (double)v)));
        Assert.That(MappedResidentBytes(path), Is.GreaterThanOrEqualTo(TensorBytes), "touched pages count while mapped");
        data.Release(tensor);
        Assert.That(MappedResidentBytes(path), Is.LessThan(RoundingSlack), "released pages no longer count");
        Assert.That(MemoryMarshal.Cast<byte, float>(data.Bytes(tensor, 0, (int)TensorBytes)).SequenceEqual(values), Is.True,
            "a released tensor reads back the file's bytes");
    }

    [Test]
    public void Gguf_ReleaseOfAnotherFilesTensor_Throws()
    {
        using var temp = new TemporaryDirectory("aq-pages-");
        var writer = new GgufWriter();
        writer.AddTensor("t", [32], GgmlType.F32, s => s.Write(new byte[32 * sizeof(float)]));
        string first = Path.Combine(temp.FullPath, "a.gguf"), second = Path.Combine(temp.FullPath, "b.gguf");
        writer.Write(first);
        writer.Write(second);
        using GgufTensorData data = GgufTensorData.Open(GgufFile.Read(first));
        Assert.That(() => data.Release(GgufFile.Read(second).FindTensor("t")!), Throws.ArgumentException);
    }

    [Test]
    public void SafeTensors_ReadFloat32_ReleasesTheTensorsMappedPages()
    {
        Assume.That(OperatingSystem.IsLinux(), "resident pages of a mapping are read from /proc/self/smaps");
        using var temp = new TemporaryDirectory("aq-pages-");
        float[] values = Values();
        var writer = new SafeTensorsWriter();
        writer.AddFloat32("t", [Side, Side], values);
        string path = Path.Combine(temp.FullPath, "t.safetensors");
        writer.Write(path);

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        double sum = 0;
        foreach (float v in MemoryMarshal.Cast<byte, float>(file.GetBytes("t"))) sum += v;
        Assert.That(sum, Is.EqualTo(values.Sum(v => (double)v)));
        Assert.That(MappedResidentBytes(path), Is.GreaterThanOrEqualTo(TensorBytes), "touched pages count while mapped");
        float[] read = file.ReadFloat32("t");
        Assert.That(MappedResidentBytes(path), Is.LessThan(RoundingSlack), "converted pages no longer count");
        Assert.That(read, Is.EqualTo(values));
        Assert.That(file.ReadFloat32("t"), Is.EqualTo(values), "a released tensor reads back the file's values");
    }

    private static float[] Values() => Enumerable.Range(0, Side * Side).Select(i => (i % 4099) * 0.25f - 500f).ToArray();

    private static double Sum(GgufTensorData data, GgufTensorInfo tensor)
    {
        double sum = 0;
        for (int r = 0; r < Side; r++)
            foreach (float v in MemoryMarshal.Cast<byte, float>(data.Bytes(tensor, (long)r * Side * sizeof(float), Side * sizeof(float)))) sum += v;
        return sum;
    }

    // Σ Rss of this process's mappings of `path` (/proc/self/smaps: a header line ending in the path, then "Rss: N kB").
    private static long MappedResidentBytes(string path)
    {
        long total = 0;
        bool inFile = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            if (IsHeader(line))
                inFile = line.EndsWith(" " + path, StringComparison.Ordinal);
            else if (inFile && line.StartsWith("Rss:", StringComparison.Ordinal))
                total += long.Parse(line["Rss:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return total;
    }

    // A mapping's header line: "start-end perms offset dev inode [path]"; attribute lines are "Name: value".
    private static bool IsHeader(string line) => line.Length > 0 && !line.Split(' ', 2)[0].EndsWith(':');
}
