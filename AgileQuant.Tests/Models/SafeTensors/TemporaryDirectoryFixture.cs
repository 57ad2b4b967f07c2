namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>Base for test classes that write files: a fresh <see cref="TemporaryDirectory"/> per test.</summary>
public abstract class TemporaryDirectoryFixture
{
    private readonly string _prefix;
    private readonly bool _inMemory;

    /// <summary>Directories are named <paramref name="prefix"/>…; <paramref name="inMemory"/> puts them in /dev/shm where present.</summary>
    protected TemporaryDirectoryFixture(string prefix, bool inMemory = false)
    {
        _prefix = prefix;
        _inMemory = inMemory;
    }

    /// <summary>The current test's directory.</summary>
    protected TemporaryDirectory Temp { get; private set; } = null!;

    /// <summary>Creates the directory before each test.</summary>
    [SetUp]
    public void CreateTemporaryDirectory() =>
        Temp = _inMemory ? TemporaryDirectory.InMemoryIfAvailable(_prefix) : new TemporaryDirectory(_prefix);

    /// <summary>Deletes the directory after each test.</summary>
    [TearDown]
    public void DeleteTemporaryDirectory() => Temp.Dispose();
}
