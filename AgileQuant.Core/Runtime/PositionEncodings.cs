using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// Rotary position embeddings: rotates pairs of Q/K elements by <c>pos · θ^(−2i/d) / (s · f_i)</c>, with a linear scaling
/// factor s and per-dimension frequency factors f_i (both 1 without RoPE scaling).
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly int _headDim;
    private readonly RotaryPairing _pairing;
    private readonly float[] _inverseFrequency; // (headDim/2)

    /// <summary>Creates the embedding for heads of width <paramref name="headDim"/>.</summary>
    public RotaryEmbedding(int headDim, float theta, RotaryPairing pairing)
        : this(headDim, theta, pairing, 1f, null)
    {
    }

    /// <summary>
    /// Creates the embedding for heads of width <paramref name="headDim"/> with linear scaling <paramref name="scalingFactor"/>
    /// (positions divided by it) and per-dimension divisors <paramref name="frequencyFactors"/> (headDim / 2, or null).
    /// </summary>
    public RotaryEmbedding(int headDim, float theta, RotaryPairing pairing, float scalingFactor, IReadOnlyList<float>? frequencyFactors)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        if (headDim % 2 != 0) throw new ArgumentException($"Rotary embeddings need an even head size, found {headDim}.", nameof(headDim));
        if (!(float.IsFinite(scalingFactor) && scalingFactor > 0)) throw new ArgumentOutOfRangeException(nameof(scalingFactor), scalingFactor, "The RoPE scaling factor must be positive and finite.");
        if (frequencyFactors is not null && frequencyFactors.Count != headDim / 2)
            throw new ArgumentException($"Expected {headDim / 2} frequency factors, found {frequencyFactors.Count}.", nameof(frequencyFactors));
        _headDim = headDim;
        _pairing = pairing;
        _inverseFrequency = new float[headDim / 2];
        // inv_freq[i] = 1 / θ^(2i/d), in float32 as Hugging Face and llama2.c compute it; then / s / f_i (exact when 1)
        for (int i = 0; i < _inverseFrequency.Length; i++)
            _inverseFrequency[i] = 1f / MathF.Pow(theta, 2 * i / (float)headDim) / scalingFactor / (frequencyFactors?[i] ?? 1f);
    }

    /// <summary>
    /// Llama 3.1's <c>llama3</c> RoPE scaling as per-dimension divisors (<see cref="RotaryFrequencyFactors"/>), as Hugging Face's
    /// <c>_compute_llama3_parameters</c> and llama.cpp's converter (<c>rope_freqs</c>) define it: with wavelength
    /// λ_i = 2π / inv_freq_i, L the original context, f_i = 1 where λ_i &lt; L / high, <paramref name="factor"/> where
    /// λ_i &gt; L / low, and between them 1 / ((1 − s) / factor + s) with s = (L / λ_i − low) / (high − low).
    /// </summary>
    public static float[] Llama3FrequencyFactors(int headDim, float theta, float factor, float lowFrequencyFactor, float highFrequencyFactor, int originalContextLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(originalContextLength);
        if (!(factor > 0 && lowFrequencyFactor > 0 && highFrequencyFactor > lowFrequencyFactor && float.IsFinite(factor) && float.IsFinite(highFrequencyFactor)))
            throw new ArgumentException($"llama3 RoPE scaling needs factor > 0 and 0 < low_freq_factor < high_freq_factor, found {factor}, {lowFrequencyFactor}, {highFrequencyFactor}.");
        double lowWavelength = originalContextLength / (double)lowFrequencyFactor, highWavelength = originalContextLength / (double)highFrequencyFactor;
        float[] factors = new float[headDim / 2];
        for (int i = 0; i < factors.Length; i++)
        {
            double wavelength = 2 * Math.PI / (1f / MathF.Pow(theta, 2 * i / (float)headDim));
            double smooth = (originalContextLength / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor);
            factors[i] = wavelength < highWavelength ? 1f
                : wavelength > lowWavelength ? factor
                : (float)(1 / ((1 - smooth) / factor + smooth));
        }
        return factors;
    }

    /// <summary>Rotates every head of <paramref name="vector"/> (heads·headDim) in place for position <paramref name="position"/>.</summary>
    public void Apply(Span<float> vector, int position) => Apply(vector, [], position);

    /// <summary>
    /// Rotates every head of <paramref name="query"/> and of <paramref name="key"/> (each heads·headDim) in place for
    /// <paramref name="position"/>, the angles' cosines and sines computed once for both.
    /// </summary>
    public void Apply(Span<float> query, Span<float> key, int position)
    {
        Span<float> rotation = stackalloc float[RotationLength];
        FillRotation(position, rotation);
        Rotate(query, rotation);
        Rotate(key, rotation);
    }

    /// <summary>Floats of one position's rotation (<see cref="FillRotation"/>): a cosine and a signed sine per head element.</summary>
    internal int RotationLength => 2 * _headDim;

    /// <summary>
    /// Writes the rotation of <paramref name="position"/> as C (headDim) then S (headDim), with
    /// <c>h'[j] = h[j]·C[j] + h[partner(j)]·S[j]</c>: for pair i = (a, b), C = cos θ_i at both and S = −sin θ_i at a,
    /// +sin θ_i at b, θ_i = position · inv_freq[i].
    /// </summary>
    internal void FillRotation(int position, Span<float> rotation)
    {
        int half = _headDim / 2;
        Span<float> cos = rotation[.._headDim], sin = rotation.Slice(_headDim, _headDim);
        bool adjacent = _pairing == RotaryPairing.Adjacent;
        for (int i = 0; i < half; i++)
        {
            float angle = position * _inverseFrequency[i];
            float c = MathF.Cos(angle), s = MathF.Sin(angle);
            int ia = adjacent ? 2 * i : i;
            int ib = adjacent ? 2 * i + 1 : i + half;
            cos[ia] = c;
            cos[ib] = c;
            sin[ia] = -s;
            sin[ib] = s;
        }
    }

    /// <summary>
    /// Rotates every head of <paramref name="vector"/> (heads·headDim) in place by <paramref name="rotation"/> from
    /// <see cref="FillRotation"/>: (a, b) → (a·cos − b·sin, a·sin + b·cos) for each pair, bit for bit (a·cos + b·(−sin)
    /// and b·cos + a·sin round the same two products and add them).
    /// </summary>
    internal void Rotate(Span<float> vector, ReadOnlySpan<float> rotation)
    {
        if (rotation.Length < RotationLength) throw new ArgumentException($"Expected a rotation of {RotationLength} floats, found {rotation.Length}.", nameof(rotation));
        ReadOnlySpan<float> cos = rotation[.._headDim], sin = rotation.Slice(_headDim, _headDim);
        for (int head = 0; head + _headDim <= vector.Length; head += _headDim)
        {
            Span<float> h = vector.Slice(head, _headDim);
            if (_pairing == RotaryPairing.Adjacent) RotateAdjacent(h, cos, sin);
            else RotateHalves(h, cos, sin);
        }
    }

    // h'[j] = h[j]·C[j] + h[j ^ 1]·S[j]   (pairs (2i, 2i+1))
    private static void RotateAdjacent(Span<float> h, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int j = 0;
        if (Avx.IsSupported)
        {
            ref float hr = ref MemoryMarshal.GetReference(h);
            ref float cr = ref MemoryMarshal.GetReference(cos);
            ref float sr = ref MemoryMarshal.GetReference(sin);
            for (; j + Vector256<float>.Count <= h.Length; j += Vector256<float>.Count)
            {
                Vector256<float> x = Vector256.LoadUnsafe(ref hr, (nuint)j);
                Vector256<float> swapped = Avx.Permute(x, 0b10_11_00_01); // (x1, x0, x3, x2, ...)
                Vector256<float> rotated = x * Vector256.LoadUnsafe(ref cr, (nuint)j) + swapped * Vector256.LoadUnsafe(ref sr, (nuint)j);
                rotated.StoreUnsafe(ref hr, (nuint)j);
            }
        }
        for (; j < h.Length; j += 2)
        {
            float a = h[j], b = h[j + 1];
            h[j] = a * cos[j] + b * sin[j];
            h[j + 1] = b * cos[j + 1] + a * sin[j + 1];
        }
    }

    // h'[j] = h[j]·C[j] + h[(j + d/2) mod d]·S[j]   (pairs (i, i + d/2))
    private static void RotateHalves(Span<float> h, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = h.Length / 2, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float hr = ref MemoryMarshal.GetReference(h);
            ref float cr = ref MemoryMarshal.GetReference(cos);
            ref float sr = ref MemoryMarshal.GetReference(sin);
            for (; i + Vector256<float>.Count <= half; i += Vector256<float>.Count)
            {
                nuint ia = (nuint)i, ib = (nuint)(i + half);
                Vector256<float> a = Vector256.LoadUnsafe(ref hr, ia), b = Vector256.LoadUnsafe(ref hr, ib);
                (a * Vector256.LoadUnsafe(ref cr, ia) + b * Vector256.LoadUnsafe(ref sr, ia)).StoreUnsafe(ref hr, ia);
                (b * Vector256.LoadUnsafe(ref cr, ib) + a * Vector256.LoadUnsafe(ref sr, ib)).StoreUnsafe(ref hr, ib);
            }
        }
        for (; i < half; i++)
        {
            float a = h[i], b = h[i + half];
            h[i] = a * cos[i] + b * sin[i];
            h[i + half] = b * cos[i + half] + a * sin[i + half];
        }
    }
}

/// <summary>ALiBi head slopes (Press et al.), as BLOOM computes them, including head counts that are not a power of two.</summary>
internal static class AlibiSlopes
{
    /// <summary>
    /// Slopes for <paramref name="numHeads"/> heads: with p the largest power of two ≤ n, heads 0..p−1 get
    /// <c>2^(−8(i+1)/p)</c>; the remaining n−p heads take every other slope of the 2p-head sequence.
    /// </summary>
    public static float[] Compute(int numHeads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHeads);
        int closestPowerOfTwo = 1 << (int)Math.Floor(Math.Log2(numHeads));
        float[] slopes = new float[numHeads];
        // base = 2^(−2^(−(log2 p − 3))) = 2^(−8/p); slope_i = base^(i+1)
        float baseSlope = MathF.Pow(2f, -MathF.Pow(2f, -(MathF.Log2(closestPowerOfTwo) - 3f)));
        for (int i = 0; i < closestPowerOfTwo; i++) slopes[i] = MathF.Pow(baseSlope, i + 1);
        if (closestPowerOfTwo != numHeads)
        {
            float extraBase = MathF.Pow(2f, -MathF.Pow(2f, -(MathF.Log2(2 * closestPowerOfTwo) - 3f)));
            int extra = Math.Min(closestPowerOfTwo, numHeads - closestPowerOfTwo);
            for (int i = 0; i < extra; i++) slopes[closestPowerOfTwo + i] = MathF.Pow(extraBase, 2 * i + 1);
        }
        return slopes;
    }
}
