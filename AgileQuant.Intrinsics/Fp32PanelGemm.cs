using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
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
internal readonly struct SevenTokens : ITokenCount { public static int Value => 7; }
internal readonly struct EightTokens : ITokenCount { public static int Value => 8; }

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
/// <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c>.
/// </summary>
/// <remarks>
/// <para>Decode (up to MaxTokens tokens): threads split the 16-row panels and stream each panel once
/// from memory, writing y directly.</para>
/// <para>GEMM (more tokens), per block of ≤ <see cref="TokenBlock"/> tokens: (1) the threads copy X once
/// into a shared buffer of k-major tiles (depth blocks of <see cref="DepthBlock"/> columns, each a run
/// of token tiles), so the micro-kernel's broadcasts read contiguous memory (rows of X 16 KiB apart
/// would alias in L1/L2); (2) the threads split the panels into groups; per group and depth block
/// every token tile passes over one panel slice (256 × 16 floats = 16 KiB, L1) while the next slice
/// is prefetched, accumulating into a contiguous per-thread (group, tokens, 16) buffer that stays in
/// L2 across depth blocks (y's own rows, Rows floats apart, would alias and fall out of cache); the
/// group is then copied to y. Token tiles are MaxTokens high except the last two, which share the
/// remainder so no tile is too short to hide the FMA latency (128 = 20 × 6 + 4 + 4).</para>
/// </remarks>
internal static unsafe class Fp32PanelGemm<TMicro> where TMicro : IFp32MicroKernel
{
    /// <summary>Columns of W per cache block (panel slice = 256 × 16 floats = 16 KiB).</summary>
    public const int DepthBlock = 256;

    /// <summary>Most tokens per packed block of X (larger prompts are split into equal blocks).</summary>
    public const int TokenBlock = 192;

    /// <summary>Budget of one panel group's accumulators (group panels × tokens × 16 floats), kept in L2.</summary>
    private const int GroupAccumulatorBytes = 96 * 1024;

    /// <summary>Below this many multiply-adds a call runs on the calling thread alone.</summary>
    private const long MinParallelMacs = 1L << 18;

    /// <summary>Decode chunks per thread, so a core slowed by other processes can hand work to the other.</summary>
    private const int StreamChunksPerThread = 8;

    /// <summary>GEMM chunks per thread: finer, so the last chunk leaves the other core idle only briefly.</summary>
    private const int GemmChunksPerThread = 16;

    private const int PanelRows = Fp32Matrix.PanelRows;

    /// <summary>Computes Y = X · Wᵀ, using <paramref name="pool"/> (null: calling thread only).</summary>
    public static void MatMul(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, WorkerPool? pool, ParallelJob<Fp32GemmArgs> job)
    {
        int panelCount = w.PanelCount;
        float* panels = w.PanelPointer();
        long macs = (long)tokens * w.Rows * w.Cols;
        bool parallel = pool is not null && macs >= MinParallelMacs;
        if (tokens <= TMicro.MaxTokens)
        {
            _ = Grow(ref t_decodeTile, (long)tokens * w.Cols); // grow the calling thread's tile now, whichever chunks it runs
            fixed (float* xp = x)
            fixed (float* yp = y)
            {
                int chunkCount = parallel ? Math.Min(panelCount, pool!.Threads * StreamChunksPerThread) : 1;
                job.Execute(pool, new Fp32GemmArgs(panels, xp, yp, null, w.Rows, w.Cols, tokens, panelCount), &StreamChunk, chunkCount);
            }
            GC.KeepAlive(w); // `panels` points into w's pinned panel array, which is freed once w is unreachable
            return;
        }
        int blocks = (tokens + TokenBlock - 1) / TokenBlock;
        int blockTokens = (tokens + blocks - 1) / blocks; // equal blocks: 300 tokens → 2 × 150, not 192 + 108
        int depthBlocks = (w.Cols + DepthBlock - 1) / DepthBlock;
        float[] packed = PackedScratch((long)blockTokens * w.Cols);
        fixed (float* xp = x)
        fixed (float* yp = y)
        fixed (float* pp = packed)
        {
            int packChunks = parallel ? Math.Min(depthBlocks, pool!.Threads * 4) : 1;
            int group = GroupPanels(blockTokens);
            int gemmChunks = parallel ? Math.Min(panelCount, Math.Max(pool!.Threads * GemmChunksPerThread, (panelCount + group - 1) / group)) : 1;
            for (int m0 = 0; m0 < tokens; m0 += blockTokens)
            {
                int n = Math.Min(blockTokens, tokens - m0);
                var args = new Fp32GemmArgs(panels, xp + (nint)m0 * w.Cols, yp + (nint)m0 * w.Rows, pp, w.Rows, w.Cols, n, panelCount);
                job.Execute(pool, args, &PackChunk, packChunks);
                job.Execute(pool, args, &GemmChunk, gemmChunks);
            }
        }
        GC.KeepAlive(w);
    }

    /// <summary>Panels per group so that the group's (panels, tokens, 16) accumulators fit <see cref="GroupAccumulatorBytes"/>.</summary>
    private static int GroupPanels(int tokens) => Math.Max(1, GroupAccumulatorBytes / (tokens * PanelRows * sizeof(float)));

    /// <summary>The calling thread's packed-X buffer, grown on demand and then reused by every call.</summary>
    [ThreadStatic] private static float[]? t_packed;

    /// <summary>Each thread's group accumulators, grown on demand and then reused.</summary>
    [ThreadStatic] private static float[]? t_accumulators;

    /// <summary>Per-thread decode scratch: the packed x tile of a decode call.</summary>
    [ThreadStatic] private static float[]? t_decodeTile;

    private static float[] PackedScratch(long length) => Grow(ref t_packed, length);

    private static float[] Grow(ref float[]? buffer, long length)
    {
        if (length > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(length), $"Expected at most {Array.MaxLength} scratch elements, found {length}.");
        float[]? current = buffer;
        if (current is null || current.Length < length) buffer = current = new float[length];
        return current;
    }

    // --- decode: ≤ MaxTokens tokens -------------------------------------------------------------

    private static void StreamChunk(in Fp32GemmArgs args, int chunk, int chunkCount)
    {
        (int begin, int end) = ParallelJob<Fp32GemmArgs>.Range(args.PanelCount, chunk, chunkCount);
        StreamPanels(args, begin, end);
    }

    // Y[:, 16·p0 .. 16·p1) = X · W[16·p0 .. 16·p1, :]ᵀ, whole depth per panel
    private static void StreamPanels(in Fp32GemmArgs a, int panelBegin, int panelEnd)
    {
        float* partial = stackalloc float[TMicro.MaxTokens * PanelRows];
        fixed (float* xTile = Grow(ref t_decodeTile, (long)a.Tokens * a.Cols))
        {
            PackTile(a.X, a.Cols, a.Tokens, a.Cols, xTile);
            for (int p = panelBegin; p < panelEnd; p++)
            {
                float* panel = a.Panels + (nint)p * PanelRows * a.Cols;
                int row0 = p * PanelRows;
                int rowsInPanel = Math.Min(PanelRows, a.Rows - row0);
                float* yTile = a.Y + row0;
                if (rowsInPanel == PanelRows)
                {
                    TMicro.Tile(xTile, panel, a.Cols, yTile, a.Rows, a.Tokens, accumulate: false);
                    continue;
                }
                // Last, partial panel: go through a (tokens, 16) scratch tile so no write leaves y's rows.
                TMicro.Tile(xTile, panel, a.Cols, partial, PanelRows, a.Tokens, accumulate: false);
                CopyRows(partial, PanelRows, yTile, a.Rows, a.Tokens, rowsInPanel);
            }
        }
    }

    // --- GEMM: > MaxTokens tokens ---------------------------------------------------------------

    // packed depth block b, tile (s, h) ← X[s .. s+h, 256·b .. +depth): element (k, t) at b·256·tokens + s·depth + k·h + t
    private static void PackChunk(in Fp32GemmArgs a, int chunk, int chunkCount)
    {
        int depthBlocks = (a.Cols + DepthBlock - 1) / DepthBlock;
        (int begin, int end) = ParallelJob<Fp32GemmArgs>.Range(depthBlocks, chunk, chunkCount);
        var tiles = new TokenTiles(a.Tokens, TMicro.MaxTokens);
        for (int b = begin; b < end; b++)
        {
            int k0 = b * DepthBlock;
            int depth = Math.Min(DepthBlock, a.Cols - k0);
            float* block = a.Packed + (nint)k0 * a.Tokens;
            for (int j = 0; j < tiles.Count; j++)
            {
                (int start, int height) = tiles[j];
                PackTile(a.X + (nint)start * a.Cols + k0, a.Cols, height, depth, block + (nint)start * depth);
            }
        }
    }

    // tile (depth, tokens) ← X[0..tokens, 0..depth) with row stride xStride: element (k, t) at k·tokens + t
    private static void PackTile(float* x, nint xStride, int tokens, int depth, float* tile)
    {
        for (int t = 0; t < tokens; t++)
        {
            float* row = x + t * xStride;
            for (int k = 0; k < depth; k++) tile[k * tokens + t] = row[k];
        }
    }

    private static void GemmChunk(in Fp32GemmArgs args, int chunk, int chunkCount)
    {
        (int begin, int end) = ParallelJob<Fp32GemmArgs>.Range(args.PanelCount, chunk, chunkCount);
        int group = GroupPanels(args.Tokens);
        float[] accumulators = Grow(ref t_accumulators, (long)Math.Min(group, end - begin) * args.Tokens * PanelRows);
        fixed (float* acc = accumulators)
        {
            for (int g = begin; g < end; g += group) GemmGroup(args, g, Math.Min(g + group, end), acc);
        }
    }

    // Y[:, 16·g0 .. 16·g1) = X · W[16·g0 .. 16·g1, :]ᵀ through acc (g1 - g0, tokens, 16)
    private static void GemmGroup(in Fp32GemmArgs a, int g0, int g1, float* acc)
    {
        var tiles = new TokenTiles(a.Tokens, TMicro.MaxTokens);
        nint panelStride = (nint)PanelRows * a.Cols;
        nint accStride = (nint)a.Tokens * PanelRows;
        for (int k0 = 0; k0 < a.Cols; k0 += DepthBlock)
        {
            int depth = Math.Min(DepthBlock, a.Cols - k0);
            bool accumulate = k0 > 0;
            float* block = a.Packed + (nint)k0 * a.Tokens;
            for (int p = g0; p < g1; p++)
            {
                float* panel = a.Panels + p * panelStride + (nint)k0 * PanelRows;
                // The slice the next step reads (next panel, or the group's first at the next depth block):
                // one 64-byte line per column, fetched a few lines per tile while this slice is in use.
                float* next = p + 1 < g1 ? panel + panelStride
                    : k0 + DepthBlock < a.Cols ? a.Panels + g0 * panelStride + (nint)(k0 + DepthBlock) * PanelRows : null;
                int nextLines = next is null ? 0 : Math.Min(DepthBlock, a.Cols - (p + 1 < g1 ? k0 : k0 + DepthBlock));
                int linesPerTile = (nextLines + tiles.Count - 1) / tiles.Count;
                float* accPanel = acc + (p - g0) * accStride;
                for (int j = 0; j < tiles.Count; j++)
                {
                    (int start, int height) = tiles[j];
                    float* accTile = accPanel + start * PanelRows;
                    if (Sse.IsSupported)
                    {
                        int line = j * linesPerTile, lineEnd = Math.Min(line + linesPerTile, nextLines);
                        for (; line < lineEnd; line++) Sse.Prefetch1(next + line * PanelRows);
                        // The next tile's accumulators (one line per token, from L2), so its first FMAs need not wait.
                        if (accumulate && j + 1 < tiles.Count)
                            for (int t = height; t < 2 * height; t++) Sse.Prefetch0(accTile + t * PanelRows);
                    }
                    TMicro.Tile(block + (nint)start * depth, panel, depth, accTile, PanelRows, height, accumulate);
                }
            }
        }
        for (int p = g0; p < g1; p++)
        {
            int row0 = p * PanelRows;
            CopyRows(acc + (p - g0) * accStride, PanelRows, a.Y + row0, a.Rows, a.Tokens, Math.Min(PanelRows, a.Rows - row0));
        }
    }

    private static void CopyRows(float* from, nint fromStride, float* to, nint toStride, int tokens, int count)
    {
        Debug.Assert(count <= PanelRows);
        for (int t = 0; t < tokens; t++)
            new ReadOnlySpan<float>(from + t * fromStride, count).CopyTo(new Span<float>(to + t * toStride, count));
    }
}

/// <summary>
/// How a block of tokens is cut into micro-kernel tiles: MaxTokens high, except that a short remainder
/// (≤ MaxTokens / 2) is merged with the tile before it and the two share it (6-high: 128 = 20 × 6 + 4 + 4,
/// 127 = 20 × 6 + 4 + 3), since a very short tile leaves the FMA units waiting on latency.
/// </summary>
internal readonly struct TokenTiles
{
    private readonly int _full;      // tiles of exactly maxTokens, from token 0
    private readonly int _maxTokens;
    private readonly int _first;     // height of the first tail tile (0: none)
    private readonly int _second;    // height of the second tail tile (0: none)

    public TokenTiles(int tokens, int maxTokens)
    {
        Debug.Assert(tokens > 0 && maxTokens > 0);
        _maxTokens = maxTokens;
        _full = tokens / maxTokens;
        int remainder = tokens % maxTokens;
        if (remainder == 0) (_first, _second) = (0, 0);
        else if (remainder > maxTokens / 2 || _full == 0) (_first, _second) = (remainder, 0);
        else
        {
            _full--;
            int tail = maxTokens + remainder;
            (_first, _second) = (tail - tail / 2, tail / 2);
        }
        Count = _full + (_first > 0 ? 1 : 0) + (_second > 0 ? 1 : 0);
    }

    /// <summary>Number of tiles.</summary>
    public int Count { get; }

    /// <summary>First token and height of tile <paramref name="j"/> (0 ≤ j &lt; Count).</summary>
    public (int Start, int Height) this[int j] =>
        j < _full ? (j * _maxTokens, _maxTokens)
        : j == _full ? (_full * _maxTokens, _first)
        : (_full * _maxTokens + _first, _second);
}

/// <summary>Pointers and shape of one FP32 GEMM call (or token block), shared by the threads that run its chunks.</summary>
internal readonly unsafe struct Fp32GemmArgs(float* panels, float* x, float* y, float* packed, int rows, int cols, int tokens, int panelCount)
{
    /// <summary>W's panels (PanelCount, Cols, 16).</summary>
    public readonly float* Panels = panels;
    /// <summary>X (Tokens, Cols), row-major.</summary>
    public readonly float* X = x;
    /// <summary>Y (Tokens, Rows), row-major.</summary>
    public readonly float* Y = y;
    /// <summary>Shared packed X (Tokens × Cols floats, see PackChunk); null for decode.</summary>
    public readonly float* Packed = packed;
    public readonly int Rows = rows;
    public readonly int Cols = cols;
    public readonly int Tokens = tokens;
    public readonly int PanelCount = panelCount;
}
