using System.Text;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Unicode normalization form C, the <c>NFC</c> normalizer of Hugging Face <c>tokenizer.json</c> (Qwen2, Qwen3), through
/// <see cref="string.Normalize(NormalizationForm)"/>. Under <c>InvariantGlobalization</c> .NET treats every string as
/// normalized, so text that is not already in NFC is then encoded as given.
/// </summary>
internal sealed class NfcNormalizer : Normalizer
{
    /// <inheritdoc/>
    public override string Normalize(string original)
    {
        ArgumentNullException.ThrowIfNull(original);
        return original.IsNormalized(NormalizationForm.FormC) ? original : original.Normalize(NormalizationForm.FormC);
    }

    /// <inheritdoc/>
    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}
