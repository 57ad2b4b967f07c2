using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// One Hugging Face model family: how its <c>config.json</c> maps onto a <see cref="TransformerConfig"/> and
/// its tensor names onto <see cref="TransformerWeights"/>. Adding a family means adding one implementation
/// and registering it in <see cref="HfArchitectures"/>.
/// </summary>
public interface IHfArchitecture
{
    /// <summary>The <c>model_type</c> values this family handles.</summary>
    IReadOnlyList<string> ModelTypes { get; }

    /// <summary>Builds the runtime configuration from the HF config.</summary>
    TransformerConfig ReadConfig(HfConfig config);

    /// <summary>Takes every tensor the configuration implies out of <paramref name="tensors"/> (shape-checked) and builds the weights.</summary>
    TransformerWeights ReadWeights(TransformerConfig config, HfTensorReader tensors);
}

/// <summary>The registry of supported Hugging Face families.</summary>
public static class HfArchitectures
{
    private static readonly IHfArchitecture[] All = [new LlamaArchitecture(), new OptArchitecture(), new BloomArchitecture()];

    /// <summary>Every supported <c>model_type</c>.</summary>
    public static IEnumerable<string> SupportedModelTypes => All.SelectMany(a => a.ModelTypes);

    /// <summary>The family for <paramref name="config"/>'s <c>model_type</c>; throws naming the supported ones otherwise.</summary>
    public static IHfArchitecture For(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return All.FirstOrDefault(a => a.ModelTypes.Contains(config.ModelType))
            ?? throw new ModelFormatException(config.FilePath, null,
                $"model_type '{config.ModelType}' is not supported; supported: {string.Join(", ", SupportedModelTypes)}");
    }
}
