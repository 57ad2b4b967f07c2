namespace AgileQuant.Tests;

/// <summary>
/// Locates the read-only <c>../shared</c> folder beside the repository (real weights, fixtures, golden
/// outputs). Tests that need it call <see cref="Require"/>: on a user's fresh clone without it they are
/// skipped with a reason (listed at the end of <c>dotnet test</c> by the skip-reasons logger, AgileQuant.TestLogger);
/// under <c>CI=true</c> a missing folder is a failure, never a skip. Files the repository bundles (stories260K and its
/// tokenizer in <c>assets/models/stories260K</c>, byte for byte the reference set's: <c>assets/SHA256SUMS</c>) are read
/// from the repository with <see cref="InRepo"/>, so their tests run on a fresh clone.
/// </summary>
public static class SharedAssets
{
    private static readonly Lazy<string?> Root = new(FindRoot);

    /// <summary>The repository root (the folder holding AgileQuant.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>Absolute path of <paramref name="relative"/> inside ../shared; skips or fails if absent.</summary>
    public static string Require(string relative)
    {
        string? root = Root.Value;
        string? path = root is null ? null : Path.Combine(root, relative);
        if (path is not null && (File.Exists(path) || Directory.Exists(path))) return path;
        string why = $"needs ../shared/{relative}, which is not present beside the repository";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            Assert.Fail(why + " (CI=true: ../shared must exist)");
        Assert.Ignore(why);
        return null!;
    }

    /// <summary>Absolute path of a file committed in the repository.</summary>
    public static string InRepo(string relative) => Path.Combine(RepoRoot, relative);

    private static string FindRepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "AgileQuant.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("AgileQuant.sln not found above " + AppContext.BaseDirectory);
    }

    private static string? FindRoot()
    {
        string? env = Environment.GetEnvironmentVariable("AGILEQUANT_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        string candidate = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
        return Directory.Exists(candidate) ? candidate : null;
    }
}
