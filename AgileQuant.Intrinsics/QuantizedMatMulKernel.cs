using AgileQuant.Intrinsics.Quantization;
using AgileQuant.Intrinsics.Threading;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Base of the integer kernels: quantizes each token of X symmetrically to <see cref="ActivationBits"/>
/// bits (<see cref="RowQuantizer"/>, into per-thread int8 scratch; no float copy is kept), multiplies with
/// exact int32 accumulation per weight group, and dequantizes:
/// <c>y[t, r] = s_x[t] · Σ_g s_w[r, g] · acc[t, r, g]</c>, <c>acc[t, r, g] = Σ_{c∈g} (w_q[r, c] − z[r, g]) · x_q[t, c]</c>.
/// </summary>
/// <remarks>
/// It also offers TRIP (<see cref="ITripKernel"/>): with 8-bit activations, rows quantized with static per-tensor scales
/// go through the same packed-weight inner loops; otherwise, or for the other integer format, the reference pass runs.
/// </remarks>
/// <typeparam name="TMatrix">The weight format the kernel multiplies by.</typeparam>
internal abstract unsafe class QuantizedMatMulKernel<TMatrix> : PooledMatMulKernel<TMatrix>, IStaticScaleMatMulKernel, ITripKernel where TMatrix : class, IWeightMatrix
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread alone.</summary>
    private const long MinParallelMacs = 1L << 18;

    private const int ChunksPerThread = 8;

    /// <summary>From this many tokens on, the activations are quantized on the pool too (a long prefill's take long enough on one core to be worth splitting: docs/kernels.md).</summary>
    private const int MinParallelQuantizeTokens = 16;

    private readonly ParallelJob<RowArgs> _job = new();

    private readonly ParallelJob<QuantizeArgs> _quantizeJob = new();

    private readonly ParallelJob<StaticQuantizeArgs> _staticQuantizeJob = new();

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when <paramref name="isSupported"/> is false.</summary>
    /// <param name="activationBits">Bits per activation code: 8 (codes −127..127) or 4 (−7..7).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="isSupported">Whether the instruction set the kernel needs is enabled.</param>
    /// <param name="requirement">What the kernel needs, for the error message.</param>
    private protected QuantizedMatMulKernel(int activationBits, int threads, bool isSupported, string requirement)
        : base(threads, isSupported, requirement)
    {
        _ = RowQuantizer.MaxCode(activationBits);
        ActivationBits = activationBits;
    }

    /// <summary>Bits per activation code (8 or 4).</summary>
    public int ActivationBits { get; }

    /// <summary>
    /// Whether activations get one scale per token or, for the formats that take them (<see cref="TakesGroupScales(TMatrix)"/>), one per
    /// group of columns; set once, when the kernel set is created (<see cref="KernelSelector.Create"/>), before any call.
    /// </summary>
    internal ActivationScaleGranularity ActivationScales { get; set; } = ActivationScaleGranularity.PerToken;

    /// <summary>
    /// Whether the kernel multiplies the weight group factors of <paramref name="weights"/> by per-(token, group) activation
    /// scales (<see cref="QuantizedActivations.GroupScales"/>), the groups being those of <see cref="GroupSize"/>.
    /// </summary>
    private protected virtual bool TakesGroupScales(TMatrix weights) => false;

    // per-group activation scales for this call: asked for, and taken by this kernel for these weights
    private bool UsesGroupScales(TMatrix weights) => ActivationScales == ActivationScaleGranularity.PerGroup && TakesGroupScales(weights);

    private protected override void MatMulCore(TMatrix w, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        QuantizedActivations xq = QuantizedActivations.ForCurrentThread();
        xq.Prepare(tokens, w.Cols, GroupSize(w), UsesGroupScales(w));
        fixed (float* xp = x)
        {
            int quantizeChunks = Pool is null || tokens < MinParallelQuantizeTokens ? 1 : Pool.Threads;
            _quantizeJob.Execute(Pool, new QuantizeArgs(xq, xp, ActivationBits, Order), &QuantizeChunk, quantizeChunks);
        }
        MultiplyQuantized(w, xq, y);
    }

    /// <inheritdoc />
    public bool SupportsTrip(IWeightMatrix weights) => TripMatMul.Supports(weights);

    /// <inheritdoc />
    public void MatMulTrip(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        TripMatMul.Route(this, weights, x, rows, lowBit, scales, y, Threads);
    }

    void IStaticScaleMatMulKernel.MatMulStatic(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y)
    {
        var w = (TMatrix)weights;
        PrepareWeights(w);
        QuantizedActivations xq = QuantizedActivations.ForCurrentThread();
        xq.Prepare(rows.Length, w.Cols, GroupSize(w));
        fixed (float* xp = x)
        fixed (int* rowsp = rows)
        fixed (bool* lowBitp = lowBit)
        {
            int quantizeChunks = Pool is null || rows.Length < MinParallelQuantizeTokens ? 1 : Pool.Threads;
            _staticQuantizeJob.Execute(Pool, new StaticQuantizeArgs(xq, xp, rowsp, lowBit.IsEmpty ? null : lowBitp, scales, Order), &QuantizeStaticChunk, quantizeChunks);
        }
        MultiplyQuantized(w, xq, y);
    }

    // y (xq.Tokens, Rows) from the quantized activations, the weight rows split over the pool
    private void MultiplyQuantized(TMatrix w, QuantizedActivations xq, Span<float> y)
    {
        object? callState = PrepareActivations(w, xq);
        fixed (float* yp = y)
        {
            long macs = (long)xq.Tokens * w.Rows * w.Cols;
            int blocks = (w.Rows + RowBlock - 1) / RowBlock;
            int chunkCount = Pool is null || macs < MinParallelMacs ? 1 : Math.Min(blocks, Pool.Threads * ChunksPerThread);
            _job.Execute(Pool, new RowArgs(this, w, xq, callState, yp), &RunChunk, chunkCount);
        }
    }

    /// <summary>
    /// Runs once per call on the calling thread, after the activations are quantized (per-token or static scales) and
    /// before the row chunks: a kernel derives here what every chunk of this call reads besides the activations, and
    /// returns it; each <see cref="MultiplyRows"/> of the call receives it (default: nothing, null).
    /// </summary>
    private protected virtual object? PrepareActivations(TMatrix weights, QuantizedActivations xq) => null;

    /// <summary>Rows a thread's share is a multiple of (except at the end): the kernel's row-block height.</summary>
    private protected virtual int RowBlock => 1;

    /// <summary>Input columns per weight scale group (Cols rounded up to 32 for per-row formats).</summary>
    private protected abstract int GroupSize(TMatrix weights);

    /// <summary>Order in which the quantized activations must be laid out.</summary>
    private protected abstract ActivationOrder Order { get; }

    /// <summary>
    /// Computes y[t, r] for every token and rows [rowBegin, rowEnd); y is (tokens, Rows). <paramref name="callState"/> is
    /// what <see cref="PrepareActivations"/> returned for this call.
    /// </summary>
    private protected abstract void MultiplyRows(TMatrix weights, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd);

    private static void QuantizeChunk(in QuantizeArgs args, int chunk, int chunkCount)
    {
        QuantizedActivations xq = args.Activations;
        (int begin, int end) = ParallelJob<QuantizeArgs>.Range(xq.Tokens, chunk, chunkCount);
        for (int t = begin; t < end; t++)
            xq.QuantizeToken(new ReadOnlySpan<float>(args.X + (nint)t * xq.Cols, xq.Cols), t, args.Bits, args.Order);
    }

    private readonly struct QuantizeArgs(QuantizedActivations activations, float* x, int bits, ActivationOrder order)
    {
        public readonly QuantizedActivations Activations = activations;
        public readonly float* X = x;
        public readonly int Bits = bits;
        public readonly ActivationOrder Order = order;
    }

    // token k ← row rows[k] of x quantized with the fixed scale of its bit width (QuantizedActivations.QuantizeStaticToken), tokens split over the chunks
    private static void QuantizeStaticChunk(in StaticQuantizeArgs args, int chunk, int chunkCount)
    {
        QuantizedActivations xq = args.Activations;
        (int begin, int end) = ParallelJob<StaticQuantizeArgs>.Range(xq.Tokens, chunk, chunkCount);
        for (int k = begin; k < end; k++)
        {
            int row = args.Rows[k];
            bool low = args.LowBit is not null && args.LowBit[row];
            xq.QuantizeStaticToken(new ReadOnlySpan<float>(args.X + (nint)row * xq.Cols, xq.Cols), k,
                low ? args.Scales.FourBit : args.Scales.EightBit, low ? 4 : 8, args.Order);
        }
    }

    private readonly struct StaticQuantizeArgs(QuantizedActivations activations, float* x, int* rows, bool* lowBit, StaticActivationScales scales, ActivationOrder order)
    {
        public readonly QuantizedActivations Activations = activations;
        public readonly float* X = x;
        public readonly int* Rows = rows;
        public readonly bool* LowBit = lowBit; // per row of x; null: every row 8-bit
        public readonly StaticActivationScales Scales = scales;
        public readonly ActivationOrder Order = order;
    }

    private static void RunChunk(in RowArgs args, int chunk, int chunkCount)
    {
        int block = args.Kernel.RowBlock, rows = args.Weights.Rows;
        (int begin, int end) = ParallelJob<RowArgs>.Range((rows + block - 1) / block, chunk, chunkCount);
        args.Kernel.MultiplyRows(args.Weights, args.Activations, args.CallState, args.Y, begin * block, Math.Min(rows, end * block));
    }

    private protected readonly struct RowArgs(QuantizedMatMulKernel<TMatrix> kernel, TMatrix weights, QuantizedActivations activations, object? callState, float* y)
    {
        public readonly QuantizedMatMulKernel<TMatrix> Kernel = kernel;
        public readonly TMatrix Weights = weights;
        public readonly QuantizedActivations Activations = activations;
        public readonly object? CallState = callState; // what PrepareActivations returned for this call
        public readonly float* Y = y;
    }
}

/// <summary>
/// An integer kernel that also multiplies activations quantized with fixed per-tensor scales (TRIP) instead of
/// per-token ones, through the same packed-weight inner loops.
/// </summary>
internal interface IStaticScaleMatMulKernel
{
    /// <summary>Bits of the codes the kernel's inner loop takes (a kernel for 8 takes 4-bit codes too).</summary>
    int ActivationBits { get; }

    /// <summary>
    /// y[k, ·] (rows.Length, Rows) = dequantized product of W and row rows[k] of x (n, Cols), that row quantized by
    /// <see cref="Quantization.QuantizedActivations.QuantizeStaticToken"/> (with the four-bit scale where <paramref name="lowBit"/> flags it); the arguments are checked by the caller.
    /// </summary>
    void MatMulStatic(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y);
}
