namespace AgileQuant.Core.Runtime;

/// <summary>
/// How an inference context stores the keys and values of the tokens it has seen (<see cref="RuntimeOptions.KvCache"/>).
/// Formats below F32 are stored as their bytes and read by attention directly (docs/architecture.md, "KV cache").
/// </summary>
public enum KvCacheType
{
    /// <summary>32-bit floats: the values attention computed, exactly.</summary>
    F32,

    /// <summary>IEEE half precision: each value rounded to nearest, relative error at most 2^−11 (normal range).</summary>
    F16,

    /// <summary>
    /// int8 codes, error at most half a step per value: values with one fp16 scale per block of 32 along the head dimension
    /// (llama.cpp's q8_0 layout; a head narrower than 32 or not a multiple of it uses blocks of gcd(head size, 32)), keys
    /// with one fp16 scale per channel over each group of 32 tokens (KIVI: key outliers sit in fixed channels).
    /// </summary>
    Q8,

    /// <summary>
    /// 4-bit codes with an fp16 scale and minimum: values per block of 32 along the head dimension, each block rotated by a
    /// normalized Walsh–Hadamard transform first (QuaRot) so that one outlier channel does not set the step of its block;
    /// keys per channel over each group of 16 tokens (KIVI).
    /// </summary>
    Q4,
}
