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
/// <c>y[t, i] (+)= Σ_{k &lt; depth} x[k, t] · panel[k, i]</c> for t &lt; tokens, i &lt; 16.
/// </summary>
internal unsafe interface IFp32MicroKernel
{
    /// <summary>Largest tile height (tokens per call) the micro-kernel handles.</summary>
    static abstract int MaxTokens { get; }

    /// <summary>
    /// Multiplies the packed x tile (depth, tokens) — element (k, t) at <c>k * tokens + t</c> — by the
    /// k-major panel (depth, 16) into y (tokens, 16) with row stride <paramref name="yStride"/>; adds to
    /// y when <paramref name="accumulate"/>, else overwrites it. 1 ≤ tokens ≤ MaxTokens.
    /// </summary>
    static abstract void Tile(float* x, float* panel, int depth, float* y, nint yStride, int tokens, bool accumulate);
}

/// <summary>
/// Cache-blocked, multi-threaded FP32 GEMM over the panel layout of <see cref="Fp32Matrix"/>:
/// <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c>. Threads split the 16-row panels. Each thread copies a
/// block of X (≤ <see cref="TokenBlock"/> tokens × <see cref="DepthBlock"/> columns, ≤ 240 KiB, L2) into
/// its scratch as k-major tiles of MaxTokens tokens, so the micro-kernel's broadcasts read contiguous
/// memory (rows of X 16 KiB apart would alias in L1/L2); every token tile then passes over one panel
/// slice (256 × 16 floats = 16 KiB, L1). Up to MaxTokens tokens (decode) skip depth blocking and
/// stream each panel once from memory.
/// </summary>
internal static unsafe class Fp32PanelGemm<TMicro> where TMicro : IFp32MicroKernel
{
    /// <summary>Columns of W per cache block (panel slice = 256 × 16 floats = 16 KiB).</summary>
    public const int DepthBlock = 256;

    /// <summary>Most tokens per packed X block (a multiple of every MaxTokens: 240 × 256 floats = 240 KiB of a 1 MiB L2).</summary>
    public const int TokenBlock = 240;

    /// <summary>Below this many multiply-adds a call runs on the calling thread alone.</summary>
    private const long MinParallelMacs = 1L << 18;

    /// <summary>Chunks per thread, so a core slowed by other processes can hand work to the other.</summary>
    private const int ChunksPerThread = 8;

    /// <summary>Computes Y = X · Wᵀ, using <paramref name="pool"/> (null: calling thread only).</summary>
    public static void MatMul(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, WorkerPool? pool, ParallelJob<Fp32GemmArgs> job)
    {
        int panelCount = w.PanelCount;
        float* panels = w.PanelPointer();
        _ = Scratch(tokens, w.Cols); // grow the calling thread's scratch now, whichever chunks it runs
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            long macs = (long)tokens * w.Rows * w.Cols;
            int chunkCount = pool is null || macs < MinParallelMacs ? 1 : Math.Min(panelCount, pool.Threads * ChunksPerThread);
            job.Execute(pool, new Fp32GemmArgs(panels, xp, yp, w.Rows, w.Cols, tokens, panelCount), &RunChunk, chunkCount);
        }
    }

    private static void RunChunk(in Fp32GemmArgs args, int chunk, int chunkCount)
    {
        (int begin, int end) = ParallelJob<Fp32GemmArgs>.Range(args.PanelCount, chunk, chunkCount);
        RunPanels(args, begin, end);
    }

    /// <summary>Per-thread packed-X scratch, grown on demand and then reused by every call.</summary>
    [ThreadStatic] private static float[]? t_scratch;

    private static float[] Scratch(int tokens, int cols)
    {
        (int tokenBlock, int depthBlock) = Blocking(tokens, cols);
        int length = RoundUp(tokenBlock, TMicro.MaxTokens) * depthBlock;
        float[]? scratch = t_scratch;
        if (scratch is null || scratch.Length < length) t_scratch = scratch = new float[length];
        return scratch;
    }

    private static (int TokenBlock, int DepthBlock) Blocking(int tokens, int cols)
    {
        if (tokens <= TMicro.MaxTokens) return (tokens, cols);
        int blocks = (tokens + TokenBlock - 1) / TokenBlock;
        // Equal token blocks, each a whole number of tiles: 300 tokens → 2 × 150, not 240 + 60.
        return (RoundUp((tokens + blocks - 1) / blocks, TMicro.MaxTokens), Math.Min(DepthBlock, cols));
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    // Y[:, 16·p0 .. 16·p1) = X · W[16·p0 .. 16·p1, :]ᵀ
    private static void RunPanels(in Fp32GemmArgs a, int panelBegin, int panelEnd)
    {
        int maxTokens = TMicro.MaxTokens;
        (int tokenBlock, int depthBlock) = Blocking(a.Tokens, a.Cols);
        float* partial = stackalloc float[maxTokens * Fp32Matrix.PanelRows];
        fixed (float* packed = Scratch(a.Tokens, a.Cols))
        {
            for (int k0 = 0; k0 < a.Cols; k0 += depthBlock)
            {
                int depth = Math.Min(depthBlock, a.Cols - k0);
                bool accumulate = k0 > 0;
                for (int m0 = 0; m0 < a.Tokens; m0 += tokenBlock)
                {
                    int blockTokens = Math.Min(tokenBlock, a.Tokens - m0);
                    PackTiles(a.X + (nint)m0 * a.Cols + k0, a.Cols, blockTokens, depth, packed);
                    for (int p = panelBegin; p < panelEnd; p++)
                    {
                        float* panel = a.Panels + (nint)p * Fp32Matrix.PanelRows * a.Cols + (nint)k0 * Fp32Matrix.PanelRows;
                        int row0 = p * Fp32Matrix.PanelRows;
                        int rowsInPanel = Math.Min(Fp32Matrix.PanelRows, a.Rows - row0);
                        for (int t0 = 0; t0 < blockTokens; t0 += maxTokens)
                        {
                            int tileTokens = Math.Min(maxTokens, blockTokens - t0);
                            float* xTile = packed + (nint)t0 * depth;
                            float* yTile = a.Y + (nint)(m0 + t0) * a.Rows + row0;
                            if (rowsInPanel == Fp32Matrix.PanelRows)
                            {
                                TMicro.Tile(xTile, panel, depth, yTile, a.Rows, tileTokens, accumulate);
                                continue;
                            }
                            // Last, partial panel: go through a (tokens, 16) scratch tile so no write leaves y's rows.
                            CopyTile(yTile, a.Rows, partial, Fp32Matrix.PanelRows, tileTokens, accumulate ? rowsInPanel : 0);
                            TMicro.Tile(xTile, panel, depth, partial, Fp32Matrix.PanelRows, tileTokens, accumulate);
                            CopyTile(partial, Fp32Matrix.PanelRows, yTile, a.Rows, tileTokens, rowsInPanel);
                        }
                    }
                }
            }
        }
    }

    // packed tile j (depth, n) ← X[j·MaxTokens .. +n, 0..depth), element (k, t) at j·MaxTokens·depth + k·n + t
    private static void PackTiles(float* x, nint xStride, int tokens, int depth, float* packed)
    {
        int maxTokens = TMicro.MaxTokens;
        for (int t0 = 0; t0 < tokens; t0 += maxTokens)
        {
            int n = Math.Min(maxTokens, tokens - t0);
            float* tile = packed + (nint)t0 * depth;
            for (int t = 0; t < n; t++)
            {
                float* row = x + (t0 + t) * xStride;
                for (int k = 0; k < depth; k++) tile[k * n + t] = row[k];
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
internal readonly unsafe struct Fp32GemmArgs(float* panels, float* x, float* y, int rows, int cols, int tokens, int panelCount)
{
    public readonly float* Panels = panels;
    public readonly float* X = x;
    public readonly float* Y = y;
    public readonly int Rows = rows;
    public readonly int Cols = cols;
    public readonly int Tokens = tokens;
    public readonly int PanelCount = panelCount;
}
