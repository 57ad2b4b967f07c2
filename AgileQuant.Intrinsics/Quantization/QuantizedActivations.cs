using System.Runtime.Intrinsics;
using System.Diagnostics;

namespace AgileQuant.Intrinsics.Quantization;

/// <summary>
/// Per-thread scratch for a quantized copy of X (tokens, Cols), refilled by every integer kernel call:
/// codes (tokens, Stride) with Stride = 64 · ceil(Cols / 64) (zero padded), one scale per token, and the
/// code sum of every (token, group) for the zero-point correction. With <see cref="HasGroupScales"/> each group of
/// <see cref="GroupSize"/> columns is quantized with a scale of its own (<see cref="GroupScales"/>) and the token scale is 1:
/// <c>x[t, c] ≈ s_x[t] · s_x[t, g] · q[t, c]</c>, one of the two factors always 1 (docs/kernels.md, "Activation scales").
/// </summary>
/// <remarks>
/// In <see cref="ActivationOrder.NibblePairs"/> order each 64-column block is stored as its 32 even columns
/// then its 32 odd columns, matching the low / high nibbles of 32 bytes of <see cref="Formats.PackedInt4Matrix"/>
/// after a SIMD unpack, so kernels never interleave weights.
/// </remarks>
internal sealed class QuantizedActivations
{
    [ThreadStatic] private static QuantizedActivations? t_current;

    private sbyte[] _codes = [];
    private float[] _scales = [];
    private float[] _groupScales = [];
    private int[] _groupSums = [];
    private float[] _groupSumsAsFloat = [];

    public int Tokens { get; private set; }
    public int Cols { get; private set; }
    public int Stride { get; private set; }
    public int GroupSize { get; private set; }
    public int GroupCount { get; private set; }

    /// <summary>Codes (Tokens, Stride).</summary>
    public sbyte[] Codes => _codes;

    /// <summary>Scale per token (Tokens).</summary>
    public float[] Scales => _scales;

    /// <summary>
    /// Scale per (token, group) (Tokens, GroupCount): the groups' own scales with <see cref="HasGroupScales"/>, else 1
    /// everywhere, so a kernel that multiplies its group factors by them computes the per-token result bit for bit.
    /// </summary>
    public float[] GroupScales => _groupScales;

    /// <summary>Whether each group has its own scale (<see cref="GroupScales"/>) and every token scale is 1.</summary>
    public bool HasGroupScales { get; private set; }

    /// <summary>Σ codes over each group (Tokens, GroupCount).</summary>
    public int[] GroupSums => _groupSums;

    /// <summary><see cref="GroupSums"/> as floats (Tokens, GroupCount), for vectorized zero-point corrections.</summary>
    public float[] GroupSumsAsFloat => _groupSumsAsFloat;

    /// <summary>The calling thread's scratch (created once per thread).</summary>
    public static QuantizedActivations ForCurrentThread() => t_current ??= new QuantizedActivations();

    /// <summary>Quantizes x (tokens, cols) per token with <paramref name="bits"/> bits into this scratch.</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols, int bits, int groupSize, ActivationOrder order, bool groupScales = false)
    {
        Debug.Assert(x.Length >= tokens * cols);
        Prepare(tokens, cols, groupSize, groupScales);
        for (int t = 0; t < tokens; t++) QuantizeToken(x.Slice(t * cols, cols), t, bits, order);
    }

    /// <summary>
    /// After <see cref="Prepare"/>, quantizes token <paramref name="t"/> (its <see cref="Cols"/> values <paramref name="row"/>)
    /// with a fixed scale (TRIP, docs/method.md §4): <c>q = clamp(round(x / s), −m, m)</c> (ties to even; 0 when s = 0 or x is
    /// NaN), s = <paramref name="scale"/>, m = 127 for <paramref name="bits"/> = 8 and 7 for 4. Any thread may fill its
    /// own tokens.
    /// </summary>
    public void QuantizeStaticToken(ReadOnlySpan<float> row, int t, float scale, int bits, ActivationOrder order)
    {
        float limit = bits == 4 ? 7 : 127;
        float inverse = scale > 0 ? 1f / scale : 0f;
        Span<sbyte> codes = _codes.AsSpan(t * Stride, Stride);
        codes[Cols..].Clear();
        QuantizeStaticCodes(row, inverse, limit, codes[..Cols]);
        _scales[t] = scale;
        _groupScales.AsSpan(t * GroupCount, GroupCount).Fill(1f);
        FinishRow(t, order);
    }

    // q[c] = clamp(round(x[c] · inverse), −limit, limit)   (round half to even; NaN → 0), the scalar definition element for element
    private static void QuantizeStaticCodes(ReadOnlySpan<float> x, float inverse, float limit, Span<sbyte> codes)
    {
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // 32 values per step: four float vectors rounded and clamped (integral, |q| ≤ 127: the conversions are exact),
            // narrowed int32 → int16 → int8 into one vector of codes
            var inverseV = Vector256.Create(inverse);
            var upper = Vector256.Create(limit);
            var lower = Vector256.Create(-limit);
            ref float source = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref sbyte target = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(codes);
            for (; c + 32 <= x.Length; c += 32)
            {
                Vector256<int> q0 = Code(Vector256.LoadUnsafe(ref source, (nuint)c), inverseV, upper, lower);
                Vector256<int> q1 = Code(Vector256.LoadUnsafe(ref source, (nuint)c + 8), inverseV, upper, lower);
                Vector256<int> q2 = Code(Vector256.LoadUnsafe(ref source, (nuint)c + 16), inverseV, upper, lower);
                Vector256<int> q3 = Code(Vector256.LoadUnsafe(ref source, (nuint)c + 24), inverseV, upper, lower);
                Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).AsSByte().StoreUnsafe(ref target, (nuint)c);
            }
        }
        for (; c < x.Length; c++)
        {
            float v = MathF.Round(x[c] * inverse);
            codes[c] = float.IsNaN(v) ? (sbyte)0 : (sbyte)MathF.Max(MathF.Min(v, limit), -limit);
        }
    }

    // clamp(round(x · inverse), lower, upper) as int32 lanes, NaN lanes 0
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Code(Vector256<float> x, Vector256<float> inverse, Vector256<float> upper, Vector256<float> lower)
    {
        Vector256<float> v = Vector256.Round(x * inverse);
        v = Vector256.ConditionalSelect(Vector256.Equals(v, v), Vector256.Max(Vector256.Min(v, upper), lower), Vector256<float>.Zero);
        return Vector256.ConvertToInt32(v);
    }

    /// <summary>
    /// Sets the shape and grows the buffers for x (tokens, cols) without quantizing: then every token t is filled
    /// by <see cref="QuantizeToken"/>, on any thread (tokens write disjoint parts). <paramref name="groupScales"/>: one scale
    /// per group of <paramref name="groupSize"/> columns instead of one per token (<see cref="HasGroupScales"/>).
    /// </summary>
    public void Prepare(int tokens, int cols, int groupSize, bool groupScales = false)
    {
        Debug.Assert(groupSize % 32 == 0);
        int stride = (cols + 63) / 64 * 64;
        int groupCount = (cols + groupSize - 1) / groupSize;
        Tokens = tokens;
        Cols = cols;
        Stride = stride;
        GroupSize = groupSize;
        GroupCount = groupCount;
        HasGroupScales = groupScales;
        if (_codes.Length < tokens * stride) _codes = new sbyte[tokens * stride];
        if (_scales.Length < tokens) _scales = new float[tokens];
        if (_groupSums.Length < tokens * groupCount)
        {
            _groupSums = new int[tokens * groupCount];
            _groupSumsAsFloat = new float[tokens * groupCount];
            _groupScales = new float[tokens * groupCount];
        }
    }

    /// <summary>Quantizes token <paramref name="t"/> (its <see cref="Cols"/> values <paramref name="row"/>) after <see cref="Prepare"/>.</summary>
    public void QuantizeToken(ReadOnlySpan<float> row, int t, int bits, ActivationOrder order)
    {
        Span<sbyte> codes = _codes.AsSpan(t * Stride, Stride);
        codes[Cols..].Clear();
        Span<float> groupScales = _groupScales.AsSpan(t * GroupCount, GroupCount);
        if (HasGroupScales)
        {
            // s_x[t, g] = max_{c∈g} |x[c]| / qmax, each group quantized as a row of its own; the token factor is 1
            for (int g = 0; g < GroupCount; g++)
            {
                int begin = g * GroupSize;
                groupScales[g] = RowQuantizer.QuantizeSymmetric(row[begin..Math.Min(Cols, begin + GroupSize)], bits, codes[begin..]);
            }
            _scales[t] = 1f;
        }
        else
        {
            _scales[t] = RowQuantizer.QuantizeSymmetric(row, bits, codes);
            groupScales.Fill(1f);
        }
        FinishRow(t, order);
    }

    // group sums of token t's codes, then (NibblePairs) each 64-column block reordered to even columns, odd columns
    private void FinishRow(int t, ActivationOrder order)
    {
        int stride = Stride, groupSize = GroupSize, groupCount = GroupCount;
        Span<sbyte> codes = _codes.AsSpan(t * stride, stride);
        for (int g = 0; g < groupCount; g++)
        {
            int sum = Sum(codes.Slice(g * groupSize, Math.Min(groupSize, stride - g * groupSize)));
            _groupSums[t * groupCount + g] = sum;
            _groupSumsAsFloat[t * groupCount + g] = sum;
        }
        if (order != ActivationOrder.NibblePairs) return;
        Span<sbyte> plain = stackalloc sbyte[64];
        for (int b = 0; b < stride; b += 64)
        {
            Span<sbyte> block = codes.Slice(b, 64);
            block.CopyTo(plain);
            for (int j = 0; j < 32; j++)
            {
                block[j] = plain[2 * j];
                block[32 + j] = plain[2 * j + 1];
            }
        }
    }

    // Σ codes, 32 at a time (the group lengths are multiples of 32 except a last one cut by the stride, also a multiple of 64).
    private static int Sum(ReadOnlySpan<sbyte> codes)
    {
        int i = 0, sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<int> lanes = default;
            for (; i + 32 <= codes.Length; i += 32)
            {
                (Vector256<short> lower, Vector256<short> upper) = Vector256.Widen(Vector256.Create(codes.Slice(i, 32)));
                (Vector256<int> a, Vector256<int> b) = Vector256.Widen(lower + upper);
                lanes += a + b;
            }
            sum = Vector256.Sum(lanes);
        }
        for (; i < codes.Length; i++) sum += codes[i];
        return sum;
    }
}

/// <summary>How <see cref="QuantizedActivations"/> orders the codes of each 32-column block.</summary>
internal enum ActivationOrder
{
    /// <summary>Column order.</summary>
    Plain,

    /// <summary>Per 64 columns: even columns, then odd columns (matches unpacked low / high nibbles).</summary>
    NibblePairs,
}
