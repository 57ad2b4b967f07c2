namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>A fresh directory under the system temp folder, deleted with its content on dispose.</summary>
public sealed class TemporaryDirectory : IDisposable
{
    /// <summary>Creates the directory with a name starting with <paramref name="prefix"/>.</summary>
    public TemporaryDirectory(string prefix) => FullPath = Directory.CreateTempSubdirectory(prefix).FullName;

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
