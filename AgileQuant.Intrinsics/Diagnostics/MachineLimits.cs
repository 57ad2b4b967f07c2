using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Diagnostics;

/// <summary>
/// This machine's limits measured in the calling process, so kernel speeds can be quoted as ratios taken in the
/// same run: memory read bandwidth over small and huge pages (the GEMV bound), the AVX2 int8 multiply-add peak (the GEMM
/// bound where one operand is unsigned: W4's nibbles, W8's sign variants), the int16 multiply-add peak (the bound of the W8
/// int16 route) and the FP32 FMA peak (the FP32 GEMM's bound).
/// </summary>
public static class MachineLimits
{
    /// <summary>
    /// Read bandwidth in GB/s: the median of <paramref name="passes"/> sums over a 1 GiB float array split across
    /// <paramref name="threads"/> threads (the array is allocated, touched and released inside the call), on the pages
    /// the runtime gives an ordinary array (4 KiB on Linux unless THP is "always").
    /// </summary>
    public static double ReadBandwidthGBps(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        float[] data = GC.AllocateUninitializedArray<float>(ProbeFloats);
        data.AsSpan().Fill(1f);
        return SumBandwidth(data, threads, passes);
    }

    /// <summary>
    /// <see cref="ReadBandwidthGBps"/> over an array backed, where Linux allows, by 2 MiB transparent huge pages as the
    /// kernels' weight copies are (fewer TLB misses, so usually the higher figure: the honest bound for a weight stream).
    /// Elsewhere it measures the same as <see cref="ReadBandwidthGBps"/>.
    /// </summary>
    public static double HugePageReadBandwidthGBps(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        float[] data = HugePages.AllocatePinned<float>(ProbeFloats, zeroed: false);
        data.AsSpan().Fill(1f);
        HugePages.Collapse(data);
        return SumBandwidth(data, threads, passes);
    }

    /// <summary>
    /// Bytes of this process's anonymous memory on transparent huge pages (<c>AnonHugePages</c> of
    /// <c>/proc/self/smaps_rollup</c>), to check that weights really sit on them; 0 where that file is absent.
    /// </summary>
    public static long AnonHugePageBytes()
    {
        const string path = "/proc/self/smaps_rollup", field = "AnonHugePages:";
        if (!File.Exists(path)) return 0;
        foreach (string line in File.ReadLines(path))
            if (line.StartsWith(field, StringComparison.Ordinal)
                && long.TryParse(line.AsSpan(field.Length).Trim().TrimEnd("kB").Trim(), out long kibibytes))
                return kibibytes * 1024;
        return 0;
    }

    /// <summary>Floats in a bandwidth probe's array: 1 GiB, far beyond any cache.</summary>
    private const int ProbeFloats = 256 * 1024 * 1024;

    // Median GB/s of `passes` sums of `data`, split in `threads` contiguous shares.
    private static double SumBandwidth(float[] data, int threads, int passes)
    {
        int count = data.Length, chunk = count / threads;
        return MedianGigaRate(threads, passes, (double)count * sizeof(float),
            t => TensorPrimitives.Sum(data.AsSpan(t * chunk, t == threads - 1 ? count - t * chunk : chunk)));
    }

    /// <summary>
    /// The int8 multiply-add peak in GOPS (2 ops per multiply-add) on <paramref name="threads"/> threads:
    /// register-resident chains of <c>vpmaddubsw</c> + <c>vpmaddwd</c> + <c>vpaddd</c> (32 multiply-adds each),
    /// median of <paramref name="passes"/>; NaN where AVX2 is not enabled.
    /// </summary>
    public static double Int8PeakGops(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        if (!X86.Avx2.IsSupported) return double.NaN;
        const int iterations = 4_000_000;
        return MedianGigaRate(threads, passes, 2.0 * 32 * 8 * iterations * threads, t => Int8Chains(iterations, t + 1));
    }

    // 8 independent accumulators, each + vpmaddwd(vpmaddubsw(a, b_i), 1) per iteration (a changes every iteration): 8 · 32 multiply-adds.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int Int8Chains(int iterations, int seed)
    {
        Vector256<byte> a = Vector256.Create((byte)(seed & 7));
        Vector256<sbyte> b0 = Vector256.Create((sbyte)1), b1 = Vector256.Create((sbyte)2), b2 = Vector256.Create((sbyte)3), b3 = Vector256.Create((sbyte)4);
        Vector256<sbyte> b4 = Vector256.Create((sbyte)5), b5 = Vector256.Create((sbyte)6), b6 = Vector256.Create((sbyte)7), b7 = Vector256.Create((sbyte)8);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector256<byte> step = Vector256.Create((byte)1);
        for (int i = 0; i < iterations; i++)
        {
            a += step; // the products change every iteration, so the JIT cannot hoist them out of the loop
            c0 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b0), ones);
            c1 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b1), ones);
            c2 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b2), ones);
            c3 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b3), ones);
            c4 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b4), ones);
            c5 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b5), ones);
            c6 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b6), ones);
            c7 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(a, b7), ones);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
    }

    /// <summary>
    /// The FP32 FMA peak in GFLOPS (2 flops per multiply-add) on <paramref name="threads"/> threads: register-resident
    /// <c>vfmadd231ps</c> ymm chains, 16 independent accumulators; median of <paramref name="passes"/>; NaN where FMA is not enabled.
    /// </summary>
    public static double FmaPeakGflops(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        if (!X86.Fma.IsSupported) return double.NaN;
        const int iterations = 4_000_000;
        return MedianGigaRate(threads, passes, 2.0 * 8 * 16 * iterations * threads, t => FmaChains(iterations, t + 1));
    }

    /// <summary>
    /// The int16 multiply-add peak in GOPS (2 ops per multiply-add) on <paramref name="threads"/> threads: register-resident
    /// zmm <c>vpmaddwd</c> + <c>vpaddd</c> chains, 12 independent accumulators each taking two products per step; median of <paramref name="passes"/>; NaN where
    /// AVX-512 BW is not enabled (the AVX2 W8 kernel takes the <c>vpsignb</c> route instead).
    /// </summary>
    /// <remarks>
    /// This bounds the int16 route of <see cref="Avx512.Avx512Int8Kernel"/> (W8 GEMM below 64 tokens, or weights with a
    /// −128 code): both operands are widened to int16 for <c>vpmaddwd</c>, whose int32 result needs its own <c>vpaddd</c>,
    /// and those adds compete with the multiplies for issue slots, so its ratio to <see cref="FmaPeakGflops"/> stays below
    /// that of the <c>vpmaddubsw</c> route of <see cref="Int8PeakGops"/> that the kernel's sign-variant route uses
    /// (measured ratios: docs/kernels.md, "Register-resident ceilings of the W8A8 routes").
    /// </remarks>
    public static double Int16MultiplyAddPeakGops(int threads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        if (!X86.Avx512BW.IsSupported) return double.NaN;
        const int iterations = 2_000_000;
        return MedianGigaRate(threads, passes, 2.0 * 32 * 24 * iterations * threads, t => Int16Chains(iterations, t + 1));
    }

    // 16 accumulators c_i += a_{i mod 2} · b_{i div 2} (ymm FMA), a changing every iteration: 16 · 8 multiply-adds.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaChains(int iterations, int seed)
    {
        Vector256<float> a0 = Vector256.Create(1e-3f * seed), a1 = Vector256.Create(2e-3f * seed), step = Vector256.Create(1e-9f);
        Vector256<float> b0 = Vector256.Create(1e-7f), b1 = Vector256.Create(2e-7f), b2 = Vector256.Create(3e-7f), b3 = Vector256.Create(4e-7f);
        Vector256<float> b4 = Vector256.Create(5e-7f), b5 = Vector256.Create(6e-7f), b6 = Vector256.Create(7e-7f), b7 = Vector256.Create(8e-7f);
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector256<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        for (int i = 0; i < iterations; i++)
        {
            c0 = X86.Fma.MultiplyAdd(a0, b0, c0); c1 = X86.Fma.MultiplyAdd(a1, b0, c1);
            c2 = X86.Fma.MultiplyAdd(a0, b1, c2); c3 = X86.Fma.MultiplyAdd(a1, b1, c3);
            c4 = X86.Fma.MultiplyAdd(a0, b2, c4); c5 = X86.Fma.MultiplyAdd(a1, b2, c5);
            c6 = X86.Fma.MultiplyAdd(a0, b3, c6); c7 = X86.Fma.MultiplyAdd(a1, b3, c7);
            c8 = X86.Fma.MultiplyAdd(a0, b4, c8); c9 = X86.Fma.MultiplyAdd(a1, b4, c9);
            c10 = X86.Fma.MultiplyAdd(a0, b5, c10); c11 = X86.Fma.MultiplyAdd(a1, b5, c11);
            c12 = X86.Fma.MultiplyAdd(a0, b6, c12); c13 = X86.Fma.MultiplyAdd(a1, b6, c13);
            c14 = X86.Fma.MultiplyAdd(a0, b7, c14); c15 = X86.Fma.MultiplyAdd(a1, b7, c15);
            a0 += step; // the products change every iteration, so the JIT cannot hoist them out of the loop
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11 + c12 + c13 + c14 + c15);
    }

    // 12 accumulators c_i += vpmaddwd(a0, b_i) + vpmaddwd(a1, b_i) (zmm; the two products summed before the accumulator
    // add, which Zen 4 issues faster than one add per product), a0 and a1 changing every iteration: 24 · 32 multiply-adds.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int Int16Chains(int iterations, int seed)
    {
        Vector512<short> a0 = Vector512.Create((short)seed), a1 = Vector512.Create((short)(seed + 1)), step = Vector512.Create((short)1);
        Vector512<short> b0 = Vector512.Create((short)1), b1 = Vector512.Create((short)2), b2 = Vector512.Create((short)3), b3 = Vector512.Create((short)4);
        Vector512<short> b4 = Vector512.Create((short)5), b5 = Vector512.Create((short)6), b6 = Vector512.Create((short)7), b7 = Vector512.Create((short)8);
        Vector512<short> b8 = Vector512.Create((short)9), b9 = Vector512.Create((short)10), b10 = Vector512.Create((short)11), b11 = Vector512.Create((short)12);
        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<int> c6 = default, c7 = default, c8 = default, c9 = default, c10 = default, c11 = default;
        for (int i = 0; i < iterations; i++)
        {
            c0 += X86.Avx512BW.MultiplyAddAdjacent(a0, b0) + X86.Avx512BW.MultiplyAddAdjacent(a1, b0);
            c1 += X86.Avx512BW.MultiplyAddAdjacent(a0, b1) + X86.Avx512BW.MultiplyAddAdjacent(a1, b1);
            c2 += X86.Avx512BW.MultiplyAddAdjacent(a0, b2) + X86.Avx512BW.MultiplyAddAdjacent(a1, b2);
            c3 += X86.Avx512BW.MultiplyAddAdjacent(a0, b3) + X86.Avx512BW.MultiplyAddAdjacent(a1, b3);
            c4 += X86.Avx512BW.MultiplyAddAdjacent(a0, b4) + X86.Avx512BW.MultiplyAddAdjacent(a1, b4);
            c5 += X86.Avx512BW.MultiplyAddAdjacent(a0, b5) + X86.Avx512BW.MultiplyAddAdjacent(a1, b5);
            c6 += X86.Avx512BW.MultiplyAddAdjacent(a0, b6) + X86.Avx512BW.MultiplyAddAdjacent(a1, b6);
            c7 += X86.Avx512BW.MultiplyAddAdjacent(a0, b7) + X86.Avx512BW.MultiplyAddAdjacent(a1, b7);
            c8 += X86.Avx512BW.MultiplyAddAdjacent(a0, b8) + X86.Avx512BW.MultiplyAddAdjacent(a1, b8);
            c9 += X86.Avx512BW.MultiplyAddAdjacent(a0, b9) + X86.Avx512BW.MultiplyAddAdjacent(a1, b9);
            c10 += X86.Avx512BW.MultiplyAddAdjacent(a0, b10) + X86.Avx512BW.MultiplyAddAdjacent(a1, b10);
            c11 += X86.Avx512BW.MultiplyAddAdjacent(a0, b11) + X86.Avx512BW.MultiplyAddAdjacent(a1, b11);
            a0 += step; // the products change every iteration, so the JIT cannot hoist them out of the loop
            a1 += step;
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    // Median over `passes` runs of work(t) on `threads` threads of unitsPerPass / seconds / 1e9 (GB/s, GOPS, GFLOPS).
    private static double MedianGigaRate(int threads, int passes, double unitsPerPass, Action<int> work)
    {
        var results = new double[passes];
        for (int pass = 0; pass < passes; pass++) results[pass] = unitsPerPass / SecondsOnThreads(threads, work) / 1e9;
        Array.Sort(results);
        return results[passes / 2];
    }

    /// <summary>
    /// Runs <c>work(t)</c> for t &lt; <paramref name="threads"/> on that many dedicated threads released together, and
    /// returns the seconds until the last finishes. (Parallel.For let one thread run several shares when the thread pool
    /// was slow to join, so a "2-thread" figure could be a 1-thread one on a busy machine.)
    /// </summary>
    private static double SecondsOnThreads(int threads, Action<int> work)
    {
        using var release = new Barrier(threads + 1);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int share = t;
            workers[t] = new Thread(() =>
            {
                release.SignalAndWait();
                work(share);
            }) { IsBackground = true, Name = "AgileQuant machine limits" };
            workers[t].Start();
        }
        release.SignalAndWait();
        long start = Stopwatch.GetTimestamp();
        foreach (Thread worker in workers) worker.Join();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}
