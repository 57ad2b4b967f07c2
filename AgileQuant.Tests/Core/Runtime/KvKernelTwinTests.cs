using AgileQuant.Core.Runtime.KvStorage;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// The KV formats' SIMD kernels against their scalar twins (the specification): the integer block dot products and the
/// value accumulations bit for bit, the FP32 dot products of fp16 keys within their summation-order bound, for head
/// sizes of one block, several blocks and odd blocks (8, 16, 64, 80, 128) and 1 to 5 queries at once; the runs of rows
/// (ScoreRows, AddValueRows) against the one-row products bit for bit; the vectorized fp16 → FP32 conversion against
/// <c>(float)Half</c> on every bit pattern and the vectorized int16 rounding against <c>MathF.Round</c>.
/// </summary>
public sealed unsafe class KvKernelTwinTests
{
    private static readonly int[] HeadDims = [8, 16, 64, 80, 128];

    [Test]
    public void HalfToSingleMatchesTheConversionOnEveryBitPattern()
    {
        var halves = new Half[65536 + 13]; // a ragged tail for the scalar remainder
        for (int i = 0; i < halves.Length; i++) halves[i] = BitConverter.UInt16BitsToHalf((ushort)i);
        var floats = new float[halves.Length];
        fixed (Half* h = halves)
        fixed (float* f = floats)
            KvVectors.HalfToSingle(h, f, halves.Length);
        for (int i = 0; i < halves.Length; i++)
        {
            float expected = (float)halves[i];
            if (float.IsNaN(expected)) Assert.That(float.IsNaN(floats[i]), $"pattern {i:X4}: NaN");
            else Assert.That(BitConverter.SingleToInt32Bits(floats[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)), $"pattern {i:X4}");
        }
    }

    [Test]
    public void BlockDotProductsMatchTheirScalarTwins()
    {
        var random = new Random(17);
        sbyte* a = stackalloc sbyte[32], b = stackalloc sbyte[32];
        short* wide = stackalloc short[32];
        byte* packed = stackalloc byte[16];
        for (int trial = 0; trial < 2000; trial++)
        {
            // the extremes first: every code at ±127 (int8) / 32767 (int16) and 15, where a saturating sum would show
            bool extreme = trial < 4;
            for (int i = 0; i < 32; i++)
            {
                a[i] = (sbyte)(extreme ? (trial % 2 == 0 ? 127 : -127) : random.Next(-127, 128));
                b[i] = (sbyte)(extreme ? (trial < 2 ? 127 : -127) : random.Next(-127, 128));
                wide[i] = (short)(extreme ? (trial % 2 == 0 ? 32767 : -32767) : random.Next(-32767, 32768));
            }
            for (int j = 0; j < 16; j++) packed[j] = (byte)(extreme ? 0xFF : random.Next(256));
            Assert.That(BlockDot.Signed(a, b, 32, simd: true), Is.EqualTo(BlockDot.SignedScalar(a, b, 32)), $"int8 × int8, trial {trial}");
            Assert.That(BlockDot.Nibbles(a, packed, 32, simd: true), Is.EqualTo(BlockDot.NibblesScalar(a, packed, 32)), $"int8 × 4-bit, trial {trial}");
            Assert.That(BlockDot.Int16Signed(wide, b, 32, simd: true), Is.EqualTo(BlockDot.Int16SignedScalar(wide, b, 32)), $"int16 × int8, trial {trial}");
            Assert.That(BlockDot.Int16Nibbles(wide, packed, 32, simd: true), Is.EqualTo(BlockDot.Int16NibblesScalar(wide, packed, 32)), $"int16 × 4-bit, trial {trial}");
        }
        // a row of 7 blocks (a reduction of four at once, then three alone) against the scalar twin per block
        short* rowQuery = stackalloc short[7 * 32];
        byte* row = stackalloc byte[7 * 16];
        int* sums = stackalloc int[7];
        for (int trial = 0; trial < 200; trial++)
        {
            for (int i = 0; i < 7 * 32; i++) rowQuery[i] = (short)(trial == 0 ? 32767 : random.Next(-32767, 32768));
            for (int j = 0; j < 7 * 16; j++) row[j] = (byte)(trial == 0 ? 0xFF : random.Next(256));
            for (int blocks = 1; blocks <= 7; blocks++)
            {
                BlockDot.Int16NibblesRow(rowQuery, row, 32, blocks, sums, simd: true);
                for (int k = 0; k < blocks; k++)
                    Assert.That(sums[k], Is.EqualTo(BlockDot.Int16NibblesScalar(rowQuery + 32 * k, row + 16 * k, 32)), $"int16 × 4-bit row of {blocks} blocks, block {k}, trial {trial}");
            }
        }
        Assert.That(BlockDot.SignedScalar(a, b, 32), Is.EqualTo(Enumerable.Range(0, 32).Sum(i => a[i] * b[i])), "the twin is the definition");
    }

    [Test]
    public void RoundingToInt16MatchesMathRound()
    {
        var random = new Random(5);
        const int n = 61; // vector steps and a ragged tail
        float[] x = new float[n];
        short[] codes = new short[n];
        for (int trial = 0; trial < 500; trial++)
        {
            float max = 0;
            for (int i = 0; i < n; i++)
            {
                // halves (ties to even), values past the clamp and ordinary ones
                x[i] = (i % 5) switch { 0 => random.Next(-70000, 70000) + 0.5f, 1 => random.Next(-40, 40) * 16384.5f, _ => (random.NextSingle() - 0.5f) * 70000 };
                max = MathF.Max(max, MathF.Abs(x[i]));
            }
            float inverse = trial % 2 == 0 ? 1f : 32767f / max;
            fixed (float* px = x) fixed (short* pc = codes) KvVectors.RoundToInt16(px, inverse, pc, n);
            for (int i = 0; i < n; i++)
                Assert.That(codes[i], Is.EqualTo((short)Math.Clamp(MathF.Round(x[i] * inverse), -32767f, 32767f)), $"x = {x[i]}, inverse {inverse}, trial {trial}");
        }
    }

    public static IEnumerable<TestCaseData> Formats() =>
        from kind in new[] { "f16", "q8", "q4", "q8 channel keys", "q4 channel keys" } from hd in HeadDims select new TestCaseData(kind, hd).SetName($"{kind} d{hd}");

    [TestCaseSource(nameof(Formats))]
    public void SimdProductsMatchTheirScalarTwins(string kind, int headDim)
    {
        var random = new Random(headDim * 31 + kind.Length);
        float Normal() => MathF.Sqrt(-2 * MathF.Log(1 - random.NextSingle())) * MathF.Cos(2 * MathF.PI * random.NextSingle());
        for (int count = 1; count <= 5; count++)
        {
            float[] queries = Enumerable.Range(0, count * headDim).Select(_ => Normal()).ToArray();
            float[] rows = Enumerable.Range(0, 32 * headDim).Select(i => Normal() * (i % headDim == 1 ? 8 : 1)).ToArray();
            float[] weights = Enumerable.Range(0, count).Select(c => c == 2 ? 0f : random.NextSingle()).ToArray(); // a zero weight: skipped by both
            switch (kind)
            {
                case "f16": CheckRows<F16Rows>(queries, rows, weights, count, headDim, integerScores: false); break;
                case "q8": CheckRows<Q8Rows>(queries, rows, weights, count, headDim, integerScores: true); break;
                case "q4": CheckRows<Q4Rows<HadamardRotation>>(queries, rows, weights, count, headDim, integerScores: true); break;
                case "q8 channel keys": CheckGroup<Q8ChannelKeys>(queries, rows, count, headDim); break;
                default: CheckGroup<Q4ChannelKeys>(queries, rows, count, headDim); break;
            }
        }
    }

    // one stored row of TRows: Scores against count queries, AddValues into count accumulators
    private static void CheckRows<TRows>(float[] queries, float[] rows, float[] weights, int count, int headDim, bool integerScores) where TRows : IKvRows
    {
        byte[] row = new byte[TRows.RowBytes(headDim)], prepared = new byte[count * TRows.QueryBytes(headDim)];
        int length = TRows.AccumulatorLength(headDim);
        float[] simd = new float[count], scalar = new float[count];
        float[] simdSums = Enumerable.Range(0, count * length).Select(i => 0.01f * i).ToArray(), scalarSums = (float[])simdSums.Clone();
        fixed (float* q = queries, x = rows, p = weights, s1 = simd, s2 = scalar, a1 = simdSums, a2 = scalarSums)
        fixed (byte* r = row, pq = prepared)
        {
            TRows.Encode(x, r, headDim);
            for (int c = 0; c < count; c++) TRows.PrepareQuery(q + c * headDim, 0.125f, pq + c * TRows.QueryBytes(headDim), headDim);
            TRows.Scores(r, pq, count, s1, 1, headDim);
            TRows.ScoresScalar(r, pq, count, s2, 1, headDim);
            TRows.AddValues(r, p, 1, count, a1, headDim);
            TRows.AddValuesScalar(r, p, 1, count, a2, headDim);
        }
        Assert.That(simdSums, Is.EqualTo(scalarSums), "value accumulation, bit for bit");
        CheckRowRuns<TRows>(queries, rows, count, headDim);
        if (integerScores)
        {
            Assert.That(simd, Is.EqualTo(scalar), "scores, bit for bit (exact integer sums)");
            return;
        }
        float[] decoded = new float[headDim];
        fixed (byte* r = row) fixed (float* k = decoded) TRows.Decode(r, k, headDim);
        for (int c = 0; c < count; c++)
        {
            // two FP32 dot products of d terms in different orders differ by at most 2·d·2^−24·Σ|q·k|
            double magnitude = 0.125 * Enumerable.Range(0, headDim).Sum(d => Math.Abs((double)queries[c * headDim + d] * decoded[d]));
            Assert.That(simd[c], Is.EqualTo(scalar[c]).Within(2 * headDim * magnitude / (1 << 24) + 1e-30), $"score of query {c}");
        }
    }

    // runs of 1 to 32 stored rows (an fp16 overflow in one row): ScoreRows against Scores row by row and AddValueRows against
    // AddValuesScalar row by row, bit for bit; some weights 0
    private static void CheckRowRuns<TRows>(float[] queries, float[] rows, int count, int headDim) where TRows : IKvRows
    {
        const int runRows = 32;
        int rowBytes = TRows.RowBytes(headDim), length = TRows.AccumulatorLength(headDim);
        byte[] stored = new byte[runRows * rowBytes], prepared = new byte[count * TRows.QueryBytes(headDim)];
        float[] large = (float[])rows.Clone();
        large[7 * headDim + 3] = 1e6f; // row 7: past fp16's range (∞ in f16 rows), the rows' general path
        var random = new Random(headDim + count);
        float[] p = Enumerable.Range(0, count * runRows).Select(i => i % 7 == 3 ? 0f : random.NextSingle()).ToArray(); // (count, runRows)
        foreach (float[] source in new[] { rows, large })
            foreach (int run in new[] { 1, 5, 17, runRows })
            {
                float[] runScores = new float[count * runRows], rowScores = new float[count * runRows];
                float[] runSums = Enumerable.Range(0, count * length).Select(i => 0.01f * i).ToArray(), rowSums = (float[])runSums.Clone();
                fixed (float* q = queries, x = source, pw = p, s1 = runScores, s2 = rowScores, a1 = runSums, a2 = rowSums)
                fixed (byte* r = stored, pq = prepared)
                {
                    for (int t = 0; t < runRows; t++) TRows.Encode(x + t * headDim, r + t * rowBytes, headDim);
                    for (int c = 0; c < count; c++) TRows.PrepareQuery(q + c * headDim, 0.125f, pq + c * TRows.QueryBytes(headDim), headDim);
                    TRows.ScoreRows(r, rowBytes, run, pq, count, s1, runRows, headDim);
                    TRows.AddValueRows(r, rowBytes, run, pw, runRows, count, a1, headDim);
                    for (int t = 0; t < run; t++)
                    {
                        TRows.Scores(r + t * rowBytes, pq, count, s2 + t, runRows, headDim);
                        TRows.AddValuesScalar(r + t * rowBytes, pw + t, runRows, count, a2, headDim);
                    }
                }
                Assert.That(runScores, Is.EqualTo(rowScores), $"scores of a run of {run} rows, bit for bit");
                Assert.That(runSums, Is.EqualTo(rowSums), $"values of a run of {run} rows, bit for bit");
            }
    }

    // one stored key group: ScoreGroup over every slot against count queries
    private static void CheckGroup<TKeys>(float[] queries, float[] rows, int count, int headDim) where TKeys : IKeyFormat
    {
        int slots = TKeys.GroupSlots;
        byte[] group = new byte[TKeys.GroupBytes(headDim)], prepared = new byte[count * TKeys.QueryBytes(headDim)], scratch = new byte[count * TKeys.GroupQueryBytes(headDim)];
        float[] simd = new float[count * slots], scalar = new float[count * slots];
        fixed (float* q = queries, x = rows, s1 = simd, s2 = scalar)
        fixed (byte* g = group, pq = prepared, gq = scratch)
        {
            TKeys.EncodeGroup(x, g, headDim);
            for (int c = 0; c < count; c++) TKeys.PrepareQuery(q + c * headDim, 0.125f, pq + c * TKeys.QueryBytes(headDim), headDim);
            TKeys.ScoreGroup(g, 0, slots, pq, gq, count, s1, slots, headDim);
            TKeys.ScoreGroupScalar(g, 0, slots, pq, gq, count, s2, slots, headDim);
            TKeys.ScoreGroup(g, 3, 5, pq, gq, count, s1 + 3, slots, headDim); // slots 3..7 again, on their own: the same scores
        }
        Assert.That(simd, Is.EqualTo(scalar), "scores, bit for bit (exact integer sums)");
    }
}
