using System.Diagnostics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Intrinsics;

/// <summary>A compile-time token count: lets the JIT emit one micro-kernel per tile height.</summary>
internal interface ITokenCount
{
    /// <summary>Number of tokens (rows of x) in the tile.</summary>
    static abstract int Value { get; }
}

internal readonly struct OneToken : ITokenCount { public static int Value => 1; }
internal readonly struct TwoTokens : ITokenCount { public static int Value => 2; }
internal readonly struct ThreeTokens : ITokenCount { public static int Value => 3; }
internal readonly struct FourTokens : ITokenCount { public static int Value => 4; }
internal readonly struct FiveTokens : ITokenCount { public static int Value => 5; }
internal readonly struct SixTokens : ITokenCount { public static int Value => 6; }

/// <summary>
/// An ISA-specific FP32 micro-kernel over one 16-row panel of W:
/// <c>y[t, i] (+)= Σ_{k &lt; depth} x[t, k] · panel[k, i]</c> for t &lt; tokens, i &lt; 16.
/// </summary>
internal unsafe interface IFp32MicroKernel
{
    /// <summary>Largest tile height (tokens per call) the micro-kernel handles.</summary>
    static abstract int MaxTokens { get; }

    /// <summary>
    /// Multiplies x (tokens, depth) with row stride <paramref name="xStride"/> by the k-major panel
    /// (depth, 16) into y (tokens, 16) with row stride <paramref name="yStride"/>; adds to y when
    /// <paramref name="accumulate"/>, else overwrites it. 1 ≤ tokens ≤ MaxTokens.
    /// </summary>
    static abstract void Tile(float* x, nint xStride, float* panel, int depth, float* y, nint yStride, int tokens, bool accumulate);
}

/// <summary>
/// Cache-blocked, multi-threaded FP32 GEMM over the panel layout of <see cref="Fp32Matrix"/>:
/// <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c>. Threads split the 16-row panels; each works through
/// a depth block of <see cref="DepthBlock"/> columns at a time so the panel slice (16 KiB) stays in L1
/// and the X slice (tokens × 256 floats) in L2 while all token tiles pass over it.
/// </summary>
internal static unsafe class Fp32PanelGemm<TMicro> where TMicro : IFp32MicroKernel
{
    /// <summary>Columns of W per cache block (panel slice = 256 × 16 floats = 16 KiB).</summary>
    public const int DepthBlock = 256;

    /// <summary>Below this many multiply-adds a call runs on the calling thread alone.</summary>
    private const long MinParallelMacs = 1L << 18;

    /// <summary>Chunks per thread, so a core slowed by other processes can hand work to the other.</summary>
    private const int ChunksPerThread = 8;

    /// <summary>Computes Y = X · Wᵀ, using <paramref name="pool"/> (null: calling thread only).</summary>
    public static void MatMul(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, WorkerPool? pool, Fp32GemmJob job)
    {
        int panelCount = w.PanelCount;
        float* panels = w.PanelPointer();
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            long macs = (long)tokens * w.Rows * w.Cols;
            if (pool is null || macs < MinParallelMacs || panelCount < 2)
            {
                RunPanels(new Fp32GemmArgs(panels, xp, yp, w.Rows, w.Cols, tokens, panelCount, 1), 0, panelCount);
                return;
            }
            int chunkCount = Math.Min(panelCount, pool.Threads * ChunksPerThread);
            var args = new Fp32GemmArgs(panels, xp, yp, w.Rows, w.Cols, tokens, panelCount, chunkCount);
            if (!pool.TryEnter())
            {
                // Another caller holds the pool (and maybe this kernel's job): work alone.
                RunPanels(args, 0, panelCount);
                return;
            }
            try
            {
                job.Set(args, &RunChunk);
                pool.Run(job, chunkCount);
            }
            finally
            {
                job.Clear();
                pool.Exit();
            }
        }
    }

    private static void RunChunk(in Fp32GemmArgs args, int chunk)
    {
        int begin = (int)((long)args.PanelCount * chunk / args.ChunkCount);
        int end = (int)((long)args.PanelCount * (chunk + 1) / args.ChunkCount);
        RunPanels(args, begin, end);
    }

    // Y[:, 16·p0 .. 16·p1) = X · W[16·p0 .. 16·p1, :]ᵀ
    private static void RunPanels(in Fp32GemmArgs a, int panelBegin, int panelEnd)
    {
        int maxTokens = TMicro.MaxTokens;
        // Few tokens: stream each panel once over the full depth (weights from DRAM, x from L1).
        int depthBlock = a.Tokens <= maxTokens ? a.Cols : DepthBlock;
        float* partial = stackalloc float[maxTokens * Fp32Matrix.PanelRows];
        for (int k0 = 0; k0 < a.Cols; k0 += depthBlock)
        {
            int depth = Math.Min(depthBlock, a.Cols - k0);
            bool accumulate = k0 > 0;
            for (int p = panelBegin; p < panelEnd; p++)
            {
                float* panel = a.Panels + (nint)p * Fp32Matrix.PanelRows * a.Cols + (nint)k0 * Fp32Matrix.PanelRows;
                int row0 = p * Fp32Matrix.PanelRows;
                int rowsInPanel = Math.Min(Fp32Matrix.PanelRows, a.Rows - row0);
                for (int t0 = 0; t0 < a.Tokens; t0 += maxTokens)
                {
                    int tileTokens = Math.Min(maxTokens, a.Tokens - t0);
                    float* xTile = a.X + (nint)t0 * a.Cols + k0;
                    float* yTile = a.Y + (nint)t0 * a.Rows + row0;
                    if (rowsInPanel == Fp32Matrix.PanelRows)
                    {
                        TMicro.Tile(xTile, a.Cols, panel, depth, yTile, a.Rows, tileTokens, accumulate);
                        continue;
                    }
                    // Last, partial panel: go through a (tokens, 16) scratch tile so no write leaves y's rows.
                    CopyTile(yTile, a.Rows, partial, Fp32Matrix.PanelRows, tileTokens, accumulate ? rowsInPanel : 0);
                    TMicro.Tile(xTile, a.Cols, panel, depth, partial, Fp32Matrix.PanelRows, tileTokens, accumulate);
                    CopyTile(partial, Fp32Matrix.PanelRows, yTile, a.Rows, tileTokens, rowsInPanel);
                }
            }
        }
    }

    private static void CopyTile(float* from, nint fromStride, float* to, nint toStride, int tokens, int count)
    {
        Debug.Assert(count <= Fp32Matrix.PanelRows);
        for (int t = 0; t < tokens; t++)
            new ReadOnlySpan<float>(from + t * fromStride, count).CopyTo(new Span<float>(to + t * toStride, count));
    }
}

/// <summary>Pointers and shape of one FP32 GEMM call, shared by the threads that run its chunks.</summary>
internal readonly unsafe struct Fp32GemmArgs(float* panels, float* x, float* y, int rows, int cols, int tokens, int panelCount, int chunkCount)
{
    public readonly float* Panels = panels;
    public readonly float* X = x;
    public readonly float* Y = y;
    public readonly int Rows = rows;
    public readonly int Cols = cols;
    public readonly int Tokens = tokens;
    public readonly int PanelCount = panelCount;
    public readonly int ChunkCount = chunkCount;
}

/// <summary>
/// The reusable <see cref="ParallelJob"/> of one FP32 kernel instance (no allocation per call); only the
/// holder of the kernel's worker pool may set it.
/// </summary>
internal sealed unsafe class Fp32GemmJob : ParallelJob
{
    private Fp32GemmArgs _args;
    private delegate*<in Fp32GemmArgs, int, void> _runChunk;

    /// <summary>Points the job at one call's buffers.</summary>
    public void Set(in Fp32GemmArgs args, delegate*<in Fp32GemmArgs, int, void> runChunk)
    {
        _args = args;
        _runChunk = runChunk;
    }

    /// <summary>Drops the call's pointers once it has returned.</summary>
    public void Clear() => _args = default;

    /// <inheritdoc />
    public override void RunChunk(int chunk) => _runChunk(_args, chunk);
}
