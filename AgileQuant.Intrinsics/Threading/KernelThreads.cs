namespace AgileQuant.Intrinsics.Threading;

/// <summary>Work split into independent, numbered chunks, run by <see cref="KernelThreads.Run"/>.</summary>
public interface IChunkedWork
{
    /// <summary>
    /// Runs chunk <paramref name="chunk"/> of <paramref name="chunkCount"/>. Chunks may run on any thread, in any order,
    /// at the same time; <c>RunChunk(0, 1)</c> is the whole work.
    /// </summary>
    void RunChunk(int chunk, int chunkCount);
}

/// <summary>
/// The threads that the kernels of one thread count share (the calling thread and a process-wide worker pool), lent to
/// the work between kernel calls (a runtime's row-wise steps and attention), so that one decoder layer runs on one set of
/// threads. One instance serves one caller at a time (e.g. one inference context); it allocates nothing per call.
/// </summary>
public sealed class KernelThreads
{
    private readonly WorkerPool? _pool;
    private readonly ChunkedJob _job = new();

    /// <summary>Lends the threads of the kernels that run on <paramref name="threads"/> threads (the calling thread included).</summary>
    /// <param name="threads">Threads, ≥ 1; 1 runs everything on the calling thread.</param>
    public KernelThreads(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        Count = threads;
        _pool = threads > 1 ? WorkerPool.Shared(threads) : null;
    }

    /// <summary>Threads a run may use, the calling thread included.</summary>
    public int Count { get; }

    /// <summary>
    /// Runs chunks 0..<paramref name="chunkCount"/>-1 of <paramref name="work"/> on the pool's threads and the calling thread
    /// and returns when all are done, rethrowing the first failure. With one thread, fewer than two chunks, or the pool busy
    /// with another caller's run (a kernel call of another context), runs <c>RunChunk(0, 1)</c> on the calling thread.
    /// A chunk must not start another run or kernel call on the same pool.
    /// </summary>
    public void Run(IChunkedWork work, int chunkCount)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (_pool is null || chunkCount < 2 || !_pool.TryEnter())
        {
            work.RunChunk(0, 1);
            return;
        }
        try
        {
            _job.Work = work;
            _job.ChunkCount = chunkCount;
            _pool.Run(_job, chunkCount);
        }
        finally
        {
            _job.Work = null;
            _pool.Exit();
        }
    }

    /// <summary>The pool's view of one <see cref="Run"/>: chunk k of the caller's work.</summary>
    private sealed class ChunkedJob : ParallelJob
    {
        public IChunkedWork? Work;
        public int ChunkCount;

        public override void RunChunk(int chunk) => Work!.RunChunk(chunk, ChunkCount);
    }
}
