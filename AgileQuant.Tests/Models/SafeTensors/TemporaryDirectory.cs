namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>A fresh directory under the system temp folder, deleted with its content on dispose.</summary>
public sealed class TemporaryDirectory : IDisposable
{
    /// <summary>Creates the directory with a name starting with <paramref name="prefix"/>.</summary>
    public TemporaryDirectory(string prefix) => FullPath = Directory.CreateTempSubdirectory(prefix).FullName;

    private TemporaryDirectory(string prefix, string parent) =>
        FullPath = Directory.CreateDirectory(Path.Combine(parent, prefix + Guid.NewGuid().ToString("N")[..12])).FullName;

    /// <summary>
    /// A directory in RAM (/dev/shm) where the system has one, else in the temp folder: for tests that
    /// write many small files (fuzzing), where disk writes would dominate the run time.
    /// </summary>
    public static TemporaryDirectory InMemoryIfAvailable(string prefix) =>
        OperatingSystem.IsLinux() && Directory.Exists("/dev/shm") ? new TemporaryDirectory(prefix, "/dev/shm") : new TemporaryDirectory(prefix);

    /// <summary>Absolute path of the directory.</summary>
    public string FullPath { get; }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="name"/> inside the directory and returns its path.</summary>
    public string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(FullPath, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Deletes the directory and everything in it.</summary>
    public void Dispose()
    {
        if (Directory.Exists(FullPath)) Directory.Delete(FullPath, recursive: true);
    }
}
