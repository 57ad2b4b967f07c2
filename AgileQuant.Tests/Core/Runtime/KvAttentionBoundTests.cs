using AgileQuant.Core.Runtime;
using AgileQuant.Core.Runtime.KvStorage;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Threading;
using AgileQuant.Tests.Models.Architectures;

namespace AgileQuant.Tests.Core.Runtime;

/// <summary>
/// Each stored KV type against FP32/double references within bounds derived from its rounding: the values a context
/// stores (decoded) against the keys and values given, attention over them against attention computed in double
/// precision, and, for f16, attention end to end against the unrounded reference. A prefill chunk, then decode steps
/// (so keys sit both in whole per-channel groups and in the partial group), with GQA, odd head sizes (blocks of 8 and
/// 16), ALiBi, padding and a sliding window, on the SIMD kernels and on their scalar twins; and the family features the
/// attention applies (Gemma 2's local layer: its own attention scale, soft-capped scores, the position-based window with
/// NaN start-token scores for rows outside it) on every type.
/// </summary>
/// <remarks>
/// Stored values (fp16↑(x) ≤ x·(1 + 2^−10) + 2^−24 is a scale rounded up to fp16):
/// <list type="bullet">
/// <item>f16: |x̂ − x| ≤ 2^−11·|x| + 2^−25 (round to nearest; the subnormal step is 2^−24).</item>
/// <item>q8 keys, per channel c over a group of tokens: |k̂ − k| ≤ d_c / 2, d_c ≤ fp16↑(max|k_c| / 127).
/// q8 values, per token and block of B: |v̂ − v| ≤ d_b / 2, d_b ≤ fp16↑(max_b|v| / 127).</item>
/// <item>q4 keys: |k̂ − k| ≤ d_c / 2, d_c ≤ fp16↑((max − min + 2^−10·|min| + 2^−24) / 15) (the minimum is rounded down).
/// q4 values: each block is rotated by an orthonormal H first; the range of Hv is at most 2‖v_b‖₂, so d ≤
/// fp16↑(2‖v_b‖₂·(1 + 2^−10) / 15) and each value is off by at most ‖δ‖₂ ≤ √B·d / 2.</item>
/// <item>Keys of the partial group (fewer than a group's tokens so far) are fp16, and a group completed by later tokens is
/// rounded from those fp16 keys: its range grows by at most 2^−11, its values are off by 2^−11·|k| + 2^−25 more.</item>
/// </list>
/// Attention: soft-capping c·tanh(s/c) is 1-Lipschitz, so a capped score is off by no more than the score before it. With every score off by at most Δ, softmax weights move by at most p_j·(e^{2Δ} − 1), so
/// |ô − o| ≤ (e^{2Δ} − 1)·Σ_j p_j·|v_j| + max_j |δv_j| + the FP32 rounding of the streamed sums (a slack of 1e-5 of
/// Σ p·|v| and of the largest visible value: at most 70 terms, exponentials within a few ulps). Over the stored values, Δ is the FP32 rounding
/// of the score, (d + 2)·2^−24·scale·Σ|q·k̂|, plus, for q8/q4 keys scored on integers, the query's int16 rounding: per
/// block of B channels q' = scale·q·d_c is rounded with step max_b|q'| / 32767, each code's error times the key code |c_k|
/// (q8: 127·|k̂_c| / max|k_c|; q4: ≤ 15). End to end (f16), Δ adds scale·Σ|q|·|k̂ − k|.
/// </remarks>
public sealed unsafe class KvAttentionBoundTests
{
    private const int Context = 128;

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (KvCacheType type in new[] { KvCacheType.F16, KvCacheType.Q8, KvCacheType.Q4 })
            foreach (bool simd in new[] { true, false })
            {
                yield return new TestCaseData(type, 4, 4, 64, false, 0, false, simd).SetName($"{type} MHA d64 simd={simd}");
                yield return new TestCaseData(type, 8, 2, 128, false, 0, false, simd).SetName($"{type} GQA4 d128 simd={simd}");
                yield return new TestCaseData(type, 8, 4, 8, false, 0, true, simd).SetName($"{type} d8 padding simd={simd}");
                yield return new TestCaseData(type, 4, 2, 80, true, 24, true, simd).SetName($"{type} d80 ALiBi window24 padding simd={simd}");
            }
    }

    [TestCaseSource(nameof(Cases))]
    public void StoredKeysAndValuesAndAttentionOverThemStayWithinTheTypesBounds(KvCacheType type, int heads, int kvHeads, int headDim, bool alibi, int window, bool padding, bool simd)
    {
        var run = new AttentionRun(Model(type, heads, kvHeads, headDim, alibi, window, simd), seed: headDim + heads, padding, againstStored: true);
        run.FeedPrefillThenDecode();
        Assert.That(run.RowsChecked, Is.GreaterThan(70 * heads / 2), "rows compared");
    }

    [TestCase(4, 4, 64, false, 0, false)]
    [TestCase(8, 2, 128, false, 0, false)]
    [TestCase(4, 2, 80, true, 24, true)]
    public void F16AttentionStaysWithinItsBoundOfTheUnroundedReference(int heads, int kvHeads, int headDim, bool alibi, int window, bool padding)
    {
        var run = new AttentionRun(Model(KvCacheType.F16, heads, kvHeads, headDim, alibi, window, simd: true), seed: 3 * headDim, padding, againstStored: false);
        run.FeedPrefillThenDecode();
        Assert.That(run.RowsChecked, Is.GreaterThan(70 * heads / 2), "rows compared");
    }

    public static IEnumerable<TestCaseData> Gemma2Cases() =>
        from type in new[] { KvCacheType.F16, KvCacheType.Q8, KvCacheType.Q4 }
        from simd in new[] { true, false }
        select new TestCaseData(type, simd).SetName($"{type} gemma2 local layer simd={simd}");

    [TestCaseSource(nameof(Gemma2Cases))]
    public void Gemma2sScaleSoftCapAndWindowHoldOnEveryTypeWithinItsBounds(KvCacheType type, bool simd)
    {
        // the family test model's Gemma 2 (head size 96, soft-cap 5, window 16 on layer 0), with an attention scale other than
        // 1/√96 (as query_pre_attn_scalar sets one), so a path that ignored it would fail the bound
        FamilyTestModel gemma = FamilyTestModel.All.Single(m => m.Name == "gemma2");
        gemma = gemma with { Config = gemma.Config with { AttentionScale = 1f / 16 } };
        Assert.That((gemma.Config.IsLocalLayer(0), gemma.Config.AttentionLogitSoftcap), Is.EqualTo((true, 5f)));
        IMatMulKernel kernel = simd ? TestKernels.Default : KernelSelector.Create(new KernelOptions { Preference = KernelPreference.Scalar });
        var model = new TransformerModel(gemma.RandomWeights(7), kernel, new RuntimeOptions { KvCache = type });
        var run = new AttentionRun(model, seed: 11, padding: true, againstStored: true);
        run.FeedPrefillThenDecode();
        Assert.That(run.RowsChecked, Is.GreaterThan(70 * gemma.Config.NumHeads / 2), "rows compared");
    }

    private static TransformerModel Model(KvCacheType type, int heads, int kvHeads, int headDim, bool alibi, int window, bool simd)
    {
        TransformerWeights weights = RandomLlama.Create(heads, kvHeads, headDim, context: Context, positions: alibi ? PositionKind.Alibi : PositionKind.Rotary,
            slidingWindow: window);
        IMatMulKernel kernel = simd ? TestKernels.Default : KernelSelector.Create(new KernelOptions { Preference = KernelPreference.Scalar });
        return new TransformerModel(weights, kernel, new RuntimeOptions { KvCache = type });
    }

    /// <summary>A one-layer cache and attention of the model's layout, fed seeded random rows, each output checked against the double reference.</summary>
    private sealed class AttentionRun
    {
        private readonly TransformerModel _model;
        private readonly TransformerConfig _c;
        private readonly KvCacheType _type;
        private readonly KvCache _cache;
        private readonly ICausalAttention _attention;
        private readonly float[] _keys, _values, _queries; // (Context, KvDim), (Context, KvDim), (Context, NumHeads·HeadDim)
        private readonly bool[] _masked = new bool[Context];
        private readonly float[]? _slopes;
        private readonly bool _padding, _againstStored;

        public AttentionRun(TransformerModel model, int seed, bool padding, bool againstStored)
        {
            (_model, _c, _type, _padding, _againstStored) = (model, model.Config, model.Options.KvCache!.Value, padding, againstStored);
            _cache = new KvCache(_c, model.KvLayout, Context, 0);
            _attention = InferenceContext.CreateAttention(model, _cache.Layout, new KernelThreads(1));
            var random = new Random(seed);
            float Normal() => MathF.Sqrt(-2 * MathF.Log(1 - random.NextSingle())) * MathF.Cos(2 * MathF.PI * random.NextSingle());
            _keys = new float[Context * _c.KvDim];
            _values = new float[Context * _c.KvDim];
            _queries = new float[Context * _c.NumHeads * _c.HeadDim];
            for (int i = 0; i < _keys.Length; i++)
            {
                // an outlier channel per head (6× the others) and one with an offset, as real keys have
                _keys[i] = Normal() * (i % _c.HeadDim == 3 ? 6f : 1f) + (i % _c.HeadDim == 5 ? 2f : 0f);
                _values[i] = Normal();
            }
            for (int i = 0; i < _queries.Length; i++) _queries[i] = Normal();
            if (model.Config.Positions == PositionKind.Alibi) _slopes = AlibiSlopes.Compute(_c.NumHeads);
        }

        public int RowsChecked { get; private set; }

        public void FeedPrefillThenDecode()
        {
            Feed(0, 40);
            for (int t = 40; t < 70; t++) Feed(t, 1);
        }

        private void Feed(int start, int n)
        {
            int kv = _c.KvDim, width = _c.NumHeads * _c.HeadDim;
            var positions = Enumerable.Range(start, n).ToArray();
            bool[] masked = Enumerable.Range(start, n).Select(i => _padding && i is 5 or 6).ToArray();
            masked.CopyTo(_masked, start);
            _cache.EnsureSlots(start + n);
            Assert.That(_cache.Append(0, positions, masked, n, renumber: false), Is.EqualTo(start));
            float[] keyRows = _keys.AsSpan(start * kv, n * kv).ToArray(), valueRows = _values.AsSpan(start * kv, n * kv).ToArray();
            fixed (float* k = keyRows, v = valueRows) _cache.Storage.Store(0, start, k, v, n);
            _cache.Storage.FinishLayer(0, start, n, keyRows);
            float[] output = new float[n * width], startAttention = new float[_c.NumHeads * n];
            _attention.Attend(_cache, 0, start, n, _queries.AsSpan(start * width, n * width), output, startAttention);
            _cache.AddTokens(n);
            var stored = new Stored(this, start + n);
            for (int i = 0; i < n; i++)
                for (int h = 0; h < _c.NumHeads; h++)
                    Check(stored, start + i, h, output.AsSpan(i * width + h * _c.HeadDim, _c.HeadDim), startAttention[h * n + i]);
        }

        /// <summary>What the cache holds after a chunk (decoded), each value checked against its rounding bound.</summary>
        private sealed class Stored
        {
            public readonly float[] Keys, Values; // (cached, KvDim) decoded

            public Stored(AttentionRun run, int cached)
            {
                TransformerConfig c = run._c;
                int hd = c.HeadDim;
                (Keys, Values) = (new float[cached * c.KvDim], new float[cached * c.KvDim]);
                for (int slot = 0; slot < cached; slot++)
                    for (int h = 0; h < c.NumKvHeads; h++)
                    {
                        int at = slot * c.KvDim + h * hd;
                        run._cache.Storage.Decode(0, h, slot, cached, Keys.AsSpan(at, hd), Values.AsSpan(at, hd));
                        for (int d = 0; d < hd; d++)
                        {
                            Assert.That(Keys[at + d], Is.EqualTo(run._keys[at + d]).Within(run.KeyBound(slot, h, d, cached)), $"stored key slot {slot} head {h} dim {d}");
                            Assert.That(Values[at + d], Is.EqualTo(run._values[at + d]).Within(run.ValueBound(slot, h, d)), $"stored value slot {slot} head {h} dim {d}");
                        }
                    }
            }
        }

        // the double reference of row `slot`, head h, over the stored (or the given) keys and values, and the bound on the difference
        private void Check(Stored stored, int slot, int h, ReadOnlySpan<float> output, float startProbability)
        {
            int hd = _c.HeadDim, kv = _c.KvDim, kvHead = h / (_c.NumHeads / _c.NumKvHeads), cached = stored.Keys.Length / kv;
            // positions are the slots here: the window holds positions p_j > p_i − window
            int window = _c.IsLocalLayer(0) ? _c.SlidingWindow : 0, first = window > 0 ? Math.Max(0, slot + 1 - window) : 0;
            double scale = _c.AttentionScale > 0 ? _c.AttentionScale : 1 / Math.Sqrt(hd), cap = _c.AttentionLogitSoftcap;
            float[] q = _queries.AsSpan(slot * _c.NumHeads * hd + h * hd, hd).ToArray();
            float[] keys = _againstStored ? stored.Keys : _keys, values = _againstStored ? stored.Values : _values;
            int[] visible = Enumerable.Range(first, slot + 1 - first).Where(j => !_masked[j]).ToArray();
            if (visible.Length == 0)
            {
                Assert.That(output.ToArray(), Is.All.EqualTo(0f), $"row {slot} head {h}: nothing visible");
                return;
            }
            double Capped(double x) => cap > 0 ? cap * Math.Tanh(x / cap) : x;
            double[] s = visible.Select(j => Capped(scale * Dot(q, keys.AsSpan(j * kv + kvHead * hd, hd))) + (_slopes is null ? 0 : _slopes[h] * (double)j)).ToArray();
            double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
            double[] p = s.Select(x => Math.Exp(x - max) / sum).ToArray();
            double delta = visible.Max(j => ScoreBound(q, stored, j, kvHead, scale, cached));
            double spread = Math.Exp(2 * delta) - 1;
            // the largest value of the visible heads: q4 values are rotated back in FP32, which mixes a block's values
            double largest = visible.Max(j => values.AsSpan(j * kv + kvHead * hd, hd).ToArray().Max(Math.Abs));
            for (int d = 0; d < hd; d++)
            {
                double expected = 0, weighted = 0, valueError = 0;
                for (int k = 0; k < visible.Length; k++)
                {
                    double v = values[visible[k] * kv + kvHead * hd + d], dv = _againstStored ? 0 : ValueBound(visible[k], kvHead, d);
                    expected += p[k] * v;
                    weighted += p[k] * (Math.Abs(v) + dv);
                    valueError = Math.Max(valueError, dv);
                }
                double bound = spread * weighted + valueError + 1e-5 * (weighted + largest);
                Assert.That(output[d], Is.EqualTo(expected).Within(bound), $"row {slot} head {h} dim {d} ({_model.KvCacheDescription})");
            }
            // NaN where the start token lies outside the row's window (the row cannot be ranked by it)
            double p0 = first > 0 ? double.NaN : visible[0] == 0 ? p[0] : 0;
            Assert.That(startProbability, first > 0 ? Is.NaN : Is.EqualTo(p0).Within(p0 * spread + 1e-6), $"row {slot} head {h}: start-token probability");
            RowsChecked++;
        }

        private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        {
            double sum = 0;
            for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
            return sum;
        }

        private static double HalfUp(double x) => x * (1 + 1.0 / 1024) + 1.0 / (1 << 24);

        private int GroupSlots => _type switch { KvCacheType.Q8 => Q8ChannelKeys.GroupSlots, KvCacheType.Q4 => Q4ChannelKeys.GroupSlots, _ => 1 };

        private bool InWholeGroup(int slot, int cached) => GroupSlots > 1 && slot / GroupSlots * GroupSlots + GroupSlots <= cached;

        // the given keys of channel c over the group holding `slot`: their range and largest magnitude
        private (double Min, double Max, double Largest) Channel(int slot, int kvHead, int c)
        {
            int g = GroupSlots, groupStart = slot / g * g;
            double lo = double.MaxValue, hi = double.MinValue, amax = 0;
            for (int t = groupStart; t < groupStart + g; t++)
            {
                double x = _keys[t * _c.KvDim + kvHead * _c.HeadDim + c];
                (lo, hi, amax) = (Math.Min(lo, x), Math.Max(hi, x), Math.Max(amax, Math.Abs(x)));
            }
            return (lo, hi, amax);
        }

        // d_c, the step of channel c in the group holding `slot` (an upper bound)
        private double KeyStep(int slot, int kvHead, int c)
        {
            (double lo, double hi, double amax) = Channel(slot, kvHead, c);
            // from fp16-rounded keys: every bound on the data grows by 2^−11 (+ 2^−25)
            (lo, hi, amax) = (lo - Math.Abs(lo) / 2048 - 1.0 / (1 << 25), hi + Math.Abs(hi) / 2048 + 1.0 / (1 << 25), amax * (1 + 1.0 / 2048) + 1.0 / (1 << 25));
            return _type == KvCacheType.Q8 ? HalfUp(amax / 127) : HalfUp((hi - lo + Math.Abs(lo) / 1024 + 1.0 / (1 << 24)) / 15);
        }

        private double KeyBound(int slot, int kvHead, int c, int cached)
        {
            double x = _keys[slot * _c.KvDim + kvHead * _c.HeadDim + c];
            double f16 = Math.Abs(x) / 2048 + 1.0 / (1 << 25);
            return InWholeGroup(slot, cached) ? KeyStep(slot, kvHead, c) / 2 * (1 + 1e-6) + f16 : f16;
        }

        private double ValueBound(int slot, int kvHead, int d)
        {
            int hd = _c.HeadDim, block = KvBlocks.Size(hd), b = d / block;
            float[] v = _values.AsSpan(slot * _c.KvDim + kvHead * hd + b * block, block).ToArray();
            return _type switch
            {
                KvCacheType.Q8 => HalfUp(v.Max(Math.Abs) / 127) / 2 * (1 + 1e-6),
                KvCacheType.Q4 => Math.Sqrt(block) * HalfUp(2 * Math.Sqrt(v.Sum(e => (double)e * e)) * (1 + 1.0 / 1024) / 15) / 2 * (1 + 1e-5),
                _ => Math.Abs(_values[slot * _c.KvDim + kvHead * hd + d]) / 2048 + 1.0 / (1 << 25),
            };
        }

        // Δ for slot j's score (see the class remarks)
        private double ScoreBound(float[] q, Stored stored, int slot, int kvHead, double scale, int cached)
        {
            int hd = _c.HeadDim, block = KvBlocks.Size(hd), at = slot * _c.KvDim + kvHead * hd;
            double magnitude = 0, keyError = 0;
            for (int c = 0; c < hd; c++)
            {
                magnitude += Math.Abs(q[c]) * (Math.Abs(stored.Keys[at + c]) + Math.Abs(_keys[at + c]));
                if (!_againstStored) keyError += Math.Abs(q[c]) * KeyBound(slot, kvHead, c, cached);
            }
            double delta = scale * (keyError + (hd + 2) / (double)(1 << 24) * magnitude);
            if (!InWholeGroup(slot, cached)) return delta;
            double queryError = 0;
            for (int b = 0; b < hd / block; b++)
            {
                double largest = 0, codes = 0;
                for (int c = b * block; c < (b + 1) * block; c++)
                {
                    largest = Math.Max(largest, scale * Math.Abs(q[c]) * KeyStep(slot, kvHead, c));
                    codes += _type == KvCacheType.Q8 ? 127 * Math.Abs(stored.Keys[at + c]) / Channel(slot, kvHead, c).Largest * (1 + 1.0 / 1024) : 15;
                }
                queryError += largest / 65534 * codes;
            }
            return delta + queryError * (1 + 1e-5);
        }
    }
}
