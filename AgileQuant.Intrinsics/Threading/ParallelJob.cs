namespace AgileQuant.Intrinsics.Threading;

/// <summary>
/// A reusable job that runs <c>run(args, chunk, chunkCount)</c> for every chunk on a <see cref="WorkerPool"/>.
/// One instance per kernel: it is only filled in by the caller that holds the pool, so a kernel call
/// allocates nothing; a caller that finds the pool busy runs the whole range itself without touching it.
/// </summary>
/// <typeparam name="TArgs">Pointers and shape of one call, shared read-only by the chunks.</typeparam>
internal sealed unsafe class ParallelJob<TArgs> : ParallelJob where TArgs : struct
{
    private TArgs _args;
    private delegate*<in TArgs, int, int, void> _run;
    private int _chunkCount;

    /// <summary>
    /// Runs chunks 0..<paramref name="chunkCount"/>-1 of <paramref name="run"/> on <paramref name="pool"/>
    /// and the calling thread; with no pool, one chunk, or a busy pool, runs <c>run(args, 0, 1)</c> (the
    /// whole range) on the calling thread.
    /// </summary>
    public void Execute(WorkerPool? pool, in TArgs args, delegate*<in TArgs, int, int, void> run, int chunkCount)
    {
        if (pool is null || chunkCount < 2 || !pool.TryEnter())
        {
            run(args, 0, 1);
            return;
        }
        try
        {
            _args = args;
            _run = run;
            _chunkCount = chunkCount;
            pool.Run(this, chunkCount);
        }
        finally
        {
            _args = default; // drop the call's pointers
            pool.Exit();
        }
    }

    /// <inheritdoc />
    public override void RunChunk(int chunk) => _run(_args, chunk, _chunkCount);

    /// <summary>The [begin, end) share of <paramref name="count"/> items that chunk <paramref name="chunk"/> of <paramref name="chunkCount"/> owns.</summary>
    public static (int Begin, int End) Range(int count, int chunk, int chunkCount) =>
        ((int)((long)count * chunk / chunkCount), (int)((long)count * (chunk + 1) / chunkCount));
}
