namespace AgileQuant.Models;

/// <summary>The steps of <see cref="ModelLoader.Load(ModelLoadOptions, IProgress{ModelLoadProgress}?, CancellationToken)"/>, in order.</summary>
public enum ModelLoadStage
{
    /// <summary>Reading tensors from the file(s); <see cref="ModelLoadProgress.Done"/> counts tensors.</summary>
    ReadingWeights,

    /// <summary>Scanning every weight for NaN and infinity (<see cref="ModelLoadOptions.CheckFiniteWeights"/>).</summary>
    CheckingWeights,

    /// <summary>Reading the tokenizer.</summary>
    LoadingTokenizer,

    /// <summary>Quantizing to <see cref="ModelLoadOptions.Quantization"/>; <see cref="ModelLoadProgress.Done"/> counts layers.</summary>
    Quantizing,
}

/// <summary>Progress of a model load: <paramref name="Done"/> of <paramref name="Total"/> units of <paramref name="Stage"/>.</summary>
/// <param name="Stage">The current step.</param>
/// <param name="Done">Units finished in this step (tensors, layers; 0 or 1 for single-unit steps).</param>
/// <param name="Total">Units in this step.</param>
public readonly record struct ModelLoadProgress(ModelLoadStage Stage, int Done, int Total);
