namespace AgileQuant.Core.Quantization;

/// <summary>
/// Static per-tensor calibration: accumulates the running <c>min</c> and <c>max</c> of every value seen over
/// calibration batches (the Agile-Quant reference uses 10 WikiText-2 batches of 2048 tokens), then yields one
/// fixed quantizer for the tensor: symmetric from <c>max(|min|, |max|)</c>, asymmetric from <c>[min, max]</c>
/// widened to include 0 (see <see cref="UniformQuantizationParameters"/>).
/// </summary>
public sealed class MinMaxObserver
{
    /// <summary>Smallest value observed (0 before any observation).</summary>
    public float Min { get; private set; }

    /// <summary>Largest value observed (0 before any observation).</summary>
    public float Max { get; private set; }

    /// <summary>Number of values observed so far.</summary>
    public long Count { get; private set; }

    /// <summary>Folds a calibration batch (any shape, row-major) into the running min/max.</summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity (reported as row 0, column = flat index).</exception>
    public void Observe(ReadOnlySpan<float> batch)
    {
        NonFiniteValueException.ThrowIfAny(batch, Math.Max(batch.Length, 1), nameof(batch));
        if (batch.IsEmpty) return;
        float min = Count == 0 ? batch[0] : Min, max = Count == 0 ? batch[0] : Max;
        foreach (float v in batch)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        Min = min;
        Max = max;
        Count += batch.Length;
    }

    /// <summary>The fixed quantizer for the observed range.</summary>
    /// <exception cref="InvalidOperationException">Nothing has been observed.</exception>
    public UniformQuantizationParameters GetParameters(int bits, bool symmetric,
        SymmetricScaleConvention convention = SymmetricScaleConvention.MaxAbsOverPositiveLimit)
    {
        if (Count == 0) throw new InvalidOperationException("no calibration values observed; call Observe first");
        return symmetric
            ? UniformQuantizationParameters.CreateSymmetric(Math.Max(-(double)Min, Max), bits, convention)
            : UniformQuantizationParameters.CreateAsymmetric(Min, Max, bits);
    }
}
