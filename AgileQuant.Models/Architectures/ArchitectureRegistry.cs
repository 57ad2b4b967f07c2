using System.Diagnostics.CodeAnalysis;
using AgileQuant.Core;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// The model families this library reads and writes, each an <see cref="ArchitectureDescription"/>: every reader and
/// writer looks a family up here by its name in the format at hand, and refuses one that is not here.
/// </summary>
public static class ArchitectureRegistry
{
    /// <summary>Every supported family; adding one is one entry here (docs/architecture.md, "How to add an architecture").</summary>
    public static IReadOnlyList<ArchitectureDescription> All { get; } =
    [
        new LlamaArchitecture(),
        new OptArchitecture(),
        new BloomArchitecture(),
        new Qwen2Architecture(),
        new Qwen3Architecture(),
        new Phi3Architecture(),
        new Gemma2Architecture(),
        new Gemma3Architecture(),
    ];

    /// <summary>The family named <paramref name="family"/> (<see cref="Core.Runtime.TransformerConfig.Family"/>), if supported.</summary>
    public static bool TryForFamily(string family, [NotNullWhen(true)] out ArchitectureDescription? description)
    {
        ArgumentNullException.ThrowIfNull(family);
        description = All.FirstOrDefault(a => a.Family == family);
        return description is not null;
    }

    /// <summary>The family named <paramref name="family"/> (<see cref="Core.Runtime.TransformerConfig.Family"/>).</summary>
    /// <exception cref="AgileQuantException">No supported family has that name.</exception>
    public static ArchitectureDescription ForFamily(string family) =>
        TryForFamily(family, out ArchitectureDescription? description) ? description
            : throw new AgileQuantException($"Unknown model family '{family}'; supported: {string.Join(", ", All.Select(a => a.Family))}.");

    /// <summary>The family of <paramref name="config"/>'s <c>model_type</c>.</summary>
    /// <exception cref="ModelFormatException">No supported family has that <c>model_type</c>.</exception>
    public static ArchitectureDescription ForHfConfig(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return All.FirstOrDefault(a => a.HfModelTypes.Contains(config.ModelType))
            ?? throw new ModelFormatException(config.FilePath, null,
                $"model_type '{config.ModelType}' is not supported; supported: {string.Join(", ", All.SelectMany(a => a.HfModelTypes))}");
    }

    /// <summary>The family of <paramref name="gguf"/>'s <c>general.architecture</c>.</summary>
    /// <exception cref="ModelFormatException">The key is missing, or no supported family has that GGUF architecture.</exception>
    public static ArchitectureDescription ForGguf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string architecture = gguf.GetString("general.architecture");
        return All.FirstOrDefault(a => a.GgufArchitecture == architecture)
            ?? throw new ModelFormatException(gguf.FilePath, null,
                $"expected general.architecture {Alternatives(All.Select(a => a.GgufArchitecture).OfType<string>())}, found '{architecture}' (not supported)");
    }

    // 'a', 'a' or 'b', 'a', 'b' or 'c'
    private static string Alternatives(IEnumerable<string> values)
    {
        string[] quoted = values.Select(v => $"'{v}'").ToArray();
        return quoted.Length < 2 ? string.Concat(quoted) : string.Join(", ", quoted[..^1]) + " or " + quoted[^1];
    }
}
