using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// The two products of one query row with one head of the transposed KV cache (rows = head dimensions, columns = slots,
/// <c>slots</c> floats apart): scores <c>s[j] = Σ_d q[d] · K[d, j]</c> and the mix <c>o[d] = Σ_j p[j] · V[d, j]</c>.
/// One pass each over the head's rows with the slot axis in registers, instead of one library call per row: at decode a
/// head is 2 × HeadDim short rows, each on its own page, and per-call overhead dominated the attention time.
/// </summary>
internal static unsafe class CachedHeadProducts
{
    /// <summary>Whether 256-bit vectors are native here (elsewhere the callers keep their one-call-per-row form).</summary>
    public static bool IsAccelerated => Vector256.IsHardwareAccelerated;

    /// <summary>Slots held in registers per pass over the head's rows (4 vectors of 8).</summary>
    private const int SlotBlock = 32;

    /// <summary>
    /// s[j] = Σ_d q[d] · K[d, j] for j &lt; <c>scores.Length</c>, summed over d in order as <c>s + K · q</c> (unfused), the
    /// same floats as one multiply-add pass per row. <paramref name="keys"/> starts at row 0 of the head.
    /// </summary>
    public static void Scores(ReadOnlySpan<float> keys, int slots, ReadOnlySpan<float> query, Span<float> scores)
    {
        int visible = scores.Length, dims = query.Length;
        if (visible == 0) return;
        if ((long)(dims - 1) * slots + visible > keys.Length) throw new ArgumentException("The key rows are shorter than the head.", nameof(keys));
        fixed (float* k = keys)
        fixed (float* q = query)
        fixed (float* s = scores)
        {
            int j = 0;
            for (; j + SlotBlock <= visible; j += SlotBlock)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                float* row = k + j;
                for (int d = 0; d < dims; d++, row += slots)
                {
                    Vector256<float> qd = Vector256.Create(q[d]);
                    a0 += Vector256.Load(row) * qd;
                    a1 += Vector256.Load(row + 8) * qd;
                    a2 += Vector256.Load(row + 16) * qd;
                    a3 += Vector256.Load(row + 24) * qd;
                }
                a0.Store(s + j);
                a1.Store(s + j + 8);
                a2.Store(s + j + 16);
                a3.Store(s + j + 24);
            }
            for (; j + Vector256<float>.Count <= visible; j += Vector256<float>.Count)
            {
                Vector256<float> a = default;
                float* row = k + j;
                for (int d = 0; d < dims; d++, row += slots) a += Vector256.Load(row) * Vector256.Create(q[d]);
                a.Store(s + j);
            }
            for (; j < visible; j++)
            {
                float a = 0;
                float* row = k + j;
                for (int d = 0; d < dims; d++, row += slots) a += *row * q[d];
                s[j] = a;
            }
        }
    }

    /// <summary>o[d] = Σ_j p[j] · V[d, j] for d &lt; <c>output.Length</c>, j &lt; <c>probabilities.Length</c>; <paramref name="values"/> starts at row 0 of the head.</summary>
    public static void Mix(ReadOnlySpan<float> probabilities, ReadOnlySpan<float> values, int slots, Span<float> output)
    {
        int visible = probabilities.Length, dims = output.Length;
        if (visible == 0)
        {
            output.Clear();
            return;
        }
        if ((long)(dims - 1) * slots + visible > values.Length) throw new ArgumentException("The value rows are shorter than the head.", nameof(values));
        fixed (float* p = probabilities)
        fixed (float* v = values)
        fixed (float* o = output)
        {
            float* row = v;
            for (int d = 0; d < dims; d++, row += slots) o[d] = Dot(p, row, visible);
        }
    }

    // Σ_j p[j] · v[j], two vector accumulators then the tail.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* p, float* v, int length)
    {
        Vector256<float> a0 = default, a1 = default;
        int j = 0;
        for (; j + 16 <= length; j += 16)
        {
            a0 += Vector256.Load(p + j) * Vector256.Load(v + j);
            a1 += Vector256.Load(p + j + 8) * Vector256.Load(v + j + 8);
        }
        if (j + 8 <= length)
        {
            a0 += Vector256.Load(p + j) * Vector256.Load(v + j);
            j += 8;
        }
        float sum = Vector256.Sum(a0 + a1);
        for (; j < length; j++) sum += p[j] * v[j];
        return sum;
    }
}
