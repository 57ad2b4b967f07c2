using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// Many threads calling one <see cref="KernelSet"/> (and so one shared worker pool and one reusable job per
/// kernel) at once, mixing GEMV and GEMM over FP32, int8 and int4 weights with different chunk counts: every
/// result must equal, bit for bit, the same call made alone. Guards against the worker-pool race where a
/// worker left over from one run claimed a chunk of the next run (see <c>WorkerPool.Run</c>).
/// </summary>
[TestFixture]
public sealed class KernelConcurrencyStressTests
{
    private const int Callers = 6;
    private const int CallsPerCaller = 300;

    /// <summary>One call: weights, tokens and input, with the output of the same call made alone.</summary>
    private sealed record Call(string Name, IWeightMatrix Weights, int Tokens, float[] X)
    {
        public float[] Expected { get; set; } = [];
    }

    /// <summary>
    /// Shapes above the kernels' parallel threshold (2^18 multiply-adds) with chunk counts 2 .. 16, so consecutive
    /// runs on the pool differ in chunk count, plus small calls that run on the caller alone.
    /// </summary>
    private static List<Call> Calls()
    {
        var calls = new List<Call>();
        void Add(string name, IWeightMatrix w, int tokens) =>
            calls.Add(new Call($"{name} {w.Rows}x{w.Cols} t{tokens}", w, tokens, MatMulReference.RandomValues(tokens * w.Cols, seed: calls.Count + 1)));
        Fp32Matrix Fp32(int rows, int cols, int seed) => new(MatMulReference.RandomValues(rows * cols, seed), rows, cols);
        Add("fp32 gemv", Fp32(1024, 384, 1), 1);
        Add("fp32 gemm", Fp32(32, 512, 2), 24);   // 2 panels: 2 chunks
        Add("fp32 gemm", Fp32(128, 320, 3), 9);   // 8 panels: 8 chunks
        Add("fp32 small", Fp32(48, 40, 4), 3);
        Add("int8 gemv", QuantizedKernelTests.Int8Weights(768, 512, seed: 5), 1);
        Add("int8 gemm", QuantizedKernelTests.Int8Weights(5, 4096, seed: 6), 16); // 5 rows: 5 chunks
        Add("int4 gemv", QuantizedKernelTests.Int4Weights(1024, 512, 128, asymmetric: true, seed: 7), 1);
        Add("int4 gemm", QuantizedKernelTests.Int4Weights(3, 8192, 32, asymmetric: false, seed: 8), 12); // 3 chunks
        Add("int4 small", QuantizedKernelTests.Int4Weights(7, 64, 32, asymmetric: true, seed: 9), 2);
        return calls;
    }

    [TestCase(2, 8)]
    [TestCase(2, 4)]
    [TestCase(4, 4)]
    public void ConcurrentCallersOnOneKernelSetGetTheSequentialResults(int threads, int activationBits)
    {
        KernelSet kernels = KernelSelector.Create(new KernelOptions { Threads = threads, ActivationBits = activationBits });
        if (kernels.Isa == KernelPreference.Scalar) Assert.Ignore("scalar kernels use no pool");
        List<Call> calls = Calls();
        foreach (Call call in calls)
        {
            call.Expected = new float[call.Tokens * call.Weights.Rows];
            kernels.MatMul(call.Weights, call.X, call.Expected, call.Tokens);
        }

        var mismatches = new List<string>();
        var failures = new List<Exception>();
        var go = new ManualResetEventSlim(false);
        Thread[] threadsRunning = Enumerable.Range(0, Callers).Select(caller => new Thread(() =>
        {
            var random = new Random(1000 + caller);
            var outputs = calls.Select(c => new float[c.Expected.Length]).ToArray();
            go.Wait();
            try
            {
                for (int i = 0; i < CallsPerCaller; i++)
                {
                    int pick = random.Next(calls.Count);
                    Call call = calls[pick];
                    float[] y = outputs[pick];
                    Array.Fill(y, float.NaN);
                    kernels.MatMul(call.Weights, call.X, y, call.Tokens);
                    if (!y.AsSpan().SequenceEqual(call.Expected))
                        lock (mismatches) mismatches.Add($"caller {caller}, call {i}: {call.Name} differs from the sequential result");
                }
            }
            catch (Exception e)
            {
                lock (failures) failures.Add(e);
            }
        }) { IsBackground = true }).ToArray();
        foreach (Thread thread in threadsRunning) thread.Start();
        go.Set();
        foreach (Thread thread in threadsRunning) Assert.That(thread.Join(TimeSpan.FromMinutes(2)), "a caller hung");

        Assert.That(failures.Select(e => e.ToString()), Is.Empty);
        Assert.That(mismatches, Is.Empty);
        // And the pool is still healthy for a lone caller.
        foreach (Call call in calls)
        {
            var y = new float[call.Expected.Length];
            kernels.MatMul(call.Weights, call.X, y, call.Tokens);
            Assert.That(y, Is.EqualTo(call.Expected), call.Name);
        }
    }

    /// <summary>
    /// Matrices never prepared, multiplied first by many threads at once: each call repacks them on its own thread if
    /// no other has yet (one copy is kept), and every result equals, bit for bit, the same call on an identical matrix
    /// prepared beforehand; the row-major views read back the same codes.
    /// </summary>
    [TestCase(8)]
    [TestCase(4)]
    public void ConcurrentFirstCallsOnUnpreparedMatricesGetThePreparedResults(int activationBits)
    {
        KernelSet kernels = KernelSelector.Create(new KernelOptions { Threads = 2, ActivationBits = activationBits });
        for (int round = 0; round < 8; round++)
        {
            int tokens = round % 2 == 0 ? 1 : 70; // GEMV and the AVX-512 W8 sign-variant GEMM route
            IWeightMatrix[] Pair() =>
            [
                QuantizedKernelTests.Int4Weights(40, 300, 32, asymmetric: round % 4 < 2, seed: round),
                new Int8RowMatrix(Enumerable.Range(0, 40 * 300).Select(i => (sbyte)((i * 7 + round) % 255 - 127)).ToArray(), MatMulReference.RandomValues(40, seed: round), 40, 300),
            ];
            IWeightMatrix[] prepared = Pair(), fresh = Pair();
            float[] x = MatMulReference.RandomValues(tokens * 300, seed: round);
            var expected = new float[prepared.Length][];
            for (int m = 0; m < prepared.Length; m++)
            {
                kernels.Prepare(prepared[m]);
                expected[m] = new float[tokens * 40];
                kernels.MatMul(prepared[m], x, expected[m], tokens);
            }
            var failures = new List<string>();
            var go = new ManualResetEventSlim(false);
            Thread[] callers = Enumerable.Range(0, Callers).Select(caller => new Thread(() =>
            {
                go.Wait();
                try
                {
                    for (int m = 0; m < fresh.Length; m++)
                    {
                        var y = new float[tokens * 40];
                        kernels.MatMul(fresh[m], x, y, tokens);
                        if (!y.AsSpan().SequenceEqual(expected[m])) lock (failures) failures.Add($"round {round}, caller {caller}: {fresh[m].GetType().Name} differs");
                    }
                }
                catch (Exception e)
                {
                    lock (failures) failures.Add(e.ToString());
                }
            }) { IsBackground = true }).ToArray();
            foreach (Thread thread in callers) thread.Start();
            go.Set();
            foreach (Thread thread in callers) Assert.That(thread.Join(TimeSpan.FromMinutes(2)), "a caller hung");
            Assert.That(failures, Is.Empty);
            Assert.That(((PackedInt4Matrix)fresh[0]).Packed.ToArray(), Is.EqualTo(((PackedInt4Matrix)prepared[0]).Packed.ToArray()), $"round {round}: W4 nibbles");
            Assert.That(((PackedInt4Matrix)fresh[0]).Scales.ToArray(), Is.EqualTo(((PackedInt4Matrix)prepared[0]).Scales.ToArray()), $"round {round}: W4 scales");
            Assert.That(((Int8RowMatrix)fresh[1]).Codes.ToArray(), Is.EqualTo(((Int8RowMatrix)prepared[1]).Codes.ToArray()), $"round {round}: W8 codes");
        }
    }
}
