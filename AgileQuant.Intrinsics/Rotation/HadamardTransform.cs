using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AgileQuant.Intrinsics.Rotation;

/// <summary>
/// The normalized Hadamard transform <c>x ← H_n·x / √n</c> in place: an orthogonal map (its inverse is its transpose)
/// that spreads an outlier channel over all n channels before they are rounded (QuaRot, arXiv 2404.00456). For
/// n = 2^k it is the fast Walsh–Hadamard transform (k butterfly stages, n·log₂n additions); for n = m·2^k with m one of the
/// orders of a known Hadamard matrix (12, 20, 28, 36, 44, 52, 60, 108, 140, 156, 172, hence also 40 = 20·2, 11008 =
/// 172·64) it is H_m ⊗ H_{2^k}: the fast transform of each of the m rows of length 2^k, then H_m across the rows.
/// </summary>
/// <remarks>
/// The vectorized path (Vector256 or Vector128, whichever the CPU accelerates) and the scalar twin
/// (<c>TransformScalar</c>) perform the same additions in the same order on every element, so their results are equal
/// bit for bit (tested, and checked by <see cref="KernelSelfTest"/>).
/// </remarks>
public static class HadamardTransform
{
    /// <summary>Whether a transform of <paramref name="n"/> values exists: n a power of two, or m·2^k with m a known order.</summary>
    public static bool IsSupported(int n) => HadamardMatrices.Split(n).Order != 0;

    /// <summary>The widths this transform covers, in words (for error messages).</summary>
    public static string SupportedWidths => $"powers of two, or m·2^k with m in {{{string.Join(", ", HadamardMatrices.Orders)}}}";

    /// <summary>The vectorized path this process runs: <c>vector256</c>, <c>vector128</c> or <c>scalar</c>.</summary>
    public static string Path => Vector256.IsHardwareAccelerated ? "vector256" : Vector128.IsHardwareAccelerated ? "vector128" : "scalar";

    /// <summary><paramref name="x"/> ← H_n·x / √n, n = x.Length (vectorized).</summary>
    /// <exception cref="ArgumentException">No Hadamard matrix of order n is known here (<see cref="IsSupported"/>).</exception>
    public static void Transform(Span<float> x) => Run(x, simd: true);

    /// <summary>Each row of <paramref name="rows"/> (count, <paramref name="width"/>) ← H_width·row / √width (vectorized).</summary>
    /// <exception cref="ArgumentException">The length is not a multiple of the width, or the width is not supported.</exception>
    public static void TransformRows(Span<float> rows, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if (rows.Length % width != 0) throw new ArgumentException($"Expected a multiple of the width {width}, found {rows.Length} values.", nameof(rows));
        for (int start = 0; start < rows.Length; start += width) Run(rows.Slice(start, width), simd: true);
    }

    /// <summary>The scalar twin of <see cref="Transform"/>: the same operations, one element at a time.</summary>
    internal static void TransformScalar(Span<float> x) => Run(x, simd: false);

    private static void Run(Span<float> x, bool simd)
    {
        int n = x.Length;
        (int m, int k) = HadamardMatrices.Split(n);
        if (m == 0) throw new ArgumentException($"No Hadamard transform of width {n}: supported are {SupportedWidths}.", nameof(x));
        for (int row = 0; row < m; row++)
        {
            Span<float> v = x.Slice(row * k, k);
            if (simd && Vector256.IsHardwareAccelerated && k >= Vector256<float>.Count) Butterflies256(v);
            else if (simd && Vector128.IsHardwareAccelerated && k >= Vector128<float>.Count) Butterflies128(v);
            else ButterfliesScalar(v);
        }
        if (m > 1) MixRows(x, m, k, simd);
        float norm = 1f / MathF.Sqrt(n);
        if (simd) TensorPrimitives.Multiply(x, norm, x);
        else for (int i = 0; i < n; i++) x[i] *= norm;
    }

    // v ← H_k·v (unnormalized), k a power of two: stage h pairs v[j] and v[j + h] into (v[j] + v[j + h], v[j] − v[j + h])
    private static void ButterfliesScalar(Span<float> v)
    {
        int k = v.Length;
        for (int half = 1; half < k; half *= 2)
            for (int i = 0; i < k; i += 2 * half)
                for (int j = i; j < i + half; j++)
                {
                    float a = v[j], b = v[j + half];
                    v[j] = a + b;
                    v[j + half] = a - b;
                }
    }

    // The stages h = 1, 2, 4 inside each register: lane l gets partner(l) + s_l·v_l with s_l = +1 in the lower lane of
    // its pair (v_j + v_{j+h}) and −1 in the upper one (v_{j} − v_{j+h}, as partner(l) = v_j); ±1·v is exact, so each lane
    // is the scalar twin's sum. Stages h ≥ 8 pair whole registers.
    private static void Butterflies256(Span<float> v)
    {
        int k = v.Length;
        ref float origin = ref MemoryMarshal.GetReference(v);
        Vector256<int> swap1 = Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6), swap2 = Vector256.Create(2, 3, 0, 1, 6, 7, 4, 5), swap4 = Vector256.Create(4, 5, 6, 7, 0, 1, 2, 3);
        Vector256<float> sign1 = Vector256.Create(1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f), sign2 = Vector256.Create(1f, 1f, -1f, -1f, 1f, 1f, -1f, -1f),
            sign4 = Vector256.Create(1f, 1f, 1f, 1f, -1f, -1f, -1f, -1f);
        for (int j = 0; j < k; j += Vector256<float>.Count)
        {
            Vector256<float> t = Vector256.LoadUnsafe(ref origin, (nuint)j);
            t = Vector256.Shuffle(t, swap1) + t * sign1;
            t = Vector256.Shuffle(t, swap2) + t * sign2;
            t = Vector256.Shuffle(t, swap4) + t * sign4;
            t.StoreUnsafe(ref origin, (nuint)j);
        }
        StagesAcrossRegisters(v, Vector256<float>.Count);
    }

    // As Butterflies256 with 4 lanes: stages h = 1, 2 inside each register, h ≥ 4 across registers.
    private static void Butterflies128(Span<float> v)
    {
        int k = v.Length;
        ref float origin = ref MemoryMarshal.GetReference(v);
        Vector128<int> swap1 = Vector128.Create(1, 0, 3, 2), swap2 = Vector128.Create(2, 3, 0, 1);
        Vector128<float> sign1 = Vector128.Create(1f, -1f, 1f, -1f), sign2 = Vector128.Create(1f, 1f, -1f, -1f);
        for (int j = 0; j < k; j += Vector128<float>.Count)
        {
            Vector128<float> t = Vector128.LoadUnsafe(ref origin, (nuint)j);
            t = Vector128.Shuffle(t, swap1) + t * sign1;
            t = Vector128.Shuffle(t, swap2) + t * sign2;
            t.StoreUnsafe(ref origin, (nuint)j);
        }
        StagesAcrossRegisters(v, Vector128<float>.Count);
    }

    // The stages h = first, 2·first, … < k, pairing whole Vector<float> registers (the same a + b, a − b as the scalar
    // twin), element by element for a stage narrower than Vector<float>
    private static void StagesAcrossRegisters(Span<float> v, int first)
    {
        int k = v.Length, width = Vector<float>.Count;
        for (int half = first; half < k; half *= 2)
        {
            if (half < width)
            {
                for (int i = 0; i < k; i += 2 * half)
                    for (int j = i; j < i + half; j++) (v[j], v[j + half]) = (v[j] + v[j + half], v[j] - v[j + half]);
                continue;
            }
            Span<Vector<float>> registers = MemoryMarshal.Cast<float, Vector<float>>(v);
            int halfRegisters = half / width;
            for (int i = 0; i < registers.Length; i += 2 * halfRegisters)
                for (int j = i; j < i + halfRegisters; j++) (registers[j], registers[j + halfRegisters]) = (registers[j] + registers[j + halfRegisters], registers[j] - registers[j + halfRegisters]);
        }
    }

    // x (m, k) ← H_m · x: row a = ±z_0 ± z_1 … ± z_{m−1} (signs of H_m's row a, summed in that order) over a copy z of x.
    // Vectorized: whole rows at a time when k fills a register; else, per column c, the m outputs at once as
    // Σ_b H_m[:, b]·z[b, c] in the same order (±1·z is exact, so each lane is the scalar sum). The same operations either way.
    private static void MixRows(Span<float> x, int m, int k, bool simd)
    {
        ReadOnlySpan<sbyte> h = HadamardMatrices.Get(m); // (m, m)
        int n = m * k;
        float[] rented = ArrayPool<float>.Shared.Rent(n + 2 * m);
        try
        {
            Span<float> z = rented.AsSpan(0, n); // (m, k): x before mixing
            x.CopyTo(z);
            bool rowsAtOnce = simd && k >= Vector128<float>.Count;
            if (simd && !rowsAtOnce)
            {
                ReadOnlySpan<float> columns = HadamardMatrices.TransposedAsFloats(m); // (m, m): row b = H_m[:, b]
                Span<float> sum = rented.AsSpan(n, m), column = rented.AsSpan(n + m, m);
                for (int c = 0; c < k; c++)
                {
                    for (int b = 0; b < m; b++) column[b] = z[b * k + c];
                    TensorPrimitives.Multiply(columns[..m], column[0], sum);
                    for (int b = 1; b < m; b++) TensorPrimitives.MultiplyAdd(columns.Slice(b * m, m), column[b], sum, sum);
                    for (int a = 0; a < m; a++) x[a * k + c] = sum[a];
                }
                return;
            }
            for (int a = 0; a < m; a++)
            {
                ReadOnlySpan<sbyte> signs = h.Slice(a * m, m);
                Span<float> y = x.Slice(a * k, k);
                if (rowsAtOnce)
                {
                    if (signs[0] > 0) z[..k].CopyTo(y);
                    else TensorPrimitives.Negate(z[..k], y);
                    for (int b = 1; b < m; b++)
                    {
                        if (signs[b] > 0) TensorPrimitives.Add(y, z.Slice(b * k, k), y);
                        else TensorPrimitives.Subtract(y, z.Slice(b * k, k), y);
                    }
                }
                else
                {
                    for (int c = 0; c < k; c++)
                    {
                        float sum = signs[0] > 0 ? z[c] : -z[c];
                        for (int b = 1; b < m; b++) sum = signs[b] > 0 ? sum + z[b * k + c] : sum - z[b * k + c];
                        y[c] = sum;
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }
}
