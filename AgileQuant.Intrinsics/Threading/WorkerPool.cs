using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace AgileQuant.Intrinsics.Threading;

/// <summary>
/// A unit of parallel work split into numbered chunks; a kernel reuses one instance per call so the
/// decode path allocates nothing.
/// </summary>
internal abstract class ParallelJob
{
    /// <summary>Runs chunk <paramref name="chunk"/> (0 ≤ chunk &lt; chunk count); chunks are independent.</summary>
    public abstract void RunChunk(int chunk);
}

/// <summary>
/// A fixed set of background threads that, together with the calling thread, run the chunks of one
/// <see cref="ParallelJob"/> at a time. Chunks are claimed dynamically, so a core slowed by other
/// processes takes fewer of them, and the caller waits only for chunks in flight, never for a worker
/// that has not woken yet (it then finds nothing left). Threads are created once and reused.
/// </summary>
internal sealed class WorkerPool
{
    private static readonly ConcurrentDictionary<int, WorkerPool> SharedPools = new();

    private readonly object _gate = new();
    private readonly ManualResetEventSlim[] _start;
    private readonly ManualResetEventSlim _finished = new(false);
    private ParallelJob? _job;
    private int _chunkCount;
    private int _generation;
    private long _claim; // (generation << 32) | next unclaimed chunk, or | Closed while a run is being set up
    private const long Closed = int.MaxValue;
    private int _completed;
    private ExceptionDispatchInfo? _failure;

    /// <summary>How long a worker stays awake after its last job, waiting for the next one (100 µs).</summary>
    private static readonly long WorkerSpinTicks = Stopwatch.Frequency / 10_000;

    /// <summary>How long the caller spins for the other threads' last chunks before blocking (50 µs).</summary>
    private static readonly long CompletionSpinTicks = Stopwatch.Frequency / 20_000;

    /// <summary>Pause instructions between two checks of a spin.</summary>
    private const int SpinIterations = 20;

    /// <summary>Whether waits spin first: only when every thread of the pool can have a processor of its own.</summary>
    private readonly bool _spins;

    /// <summary>Total threads that run a job, the calling thread included.</summary>
    public int Threads { get; }

    private WorkerPool(int threads)
    {
        Debug.Assert(threads >= 2);
        Threads = threads;
        _spins = threads <= Environment.ProcessorCount;
        // A timed wait on an unset event creates its lock object now, not during some later (decode) call.
        _finished.Wait(1);
        _start = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _start.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false);
            var thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"AgileQuant worker {i + 1}/{threads}" };
            thread.Start(_start[i]);
        }
    }

    /// <summary>The process-wide pool with <paramref name="threads"/> threads (≥ 2), created on first use.</summary>
    public static WorkerPool Shared(int threads) => SharedPools.GetOrAdd(threads, static n => new WorkerPool(n));

    /// <summary>
    /// Takes the pool for one job if no other caller holds it; on false the caller runs its work itself.
    /// The holder configures its (reusable) job, calls <see cref="Run"/>, then <see cref="Exit"/>.
    /// </summary>
    public bool TryEnter() => Monitor.TryEnter(_gate);

    /// <summary>Releases the pool taken by <see cref="TryEnter"/>.</summary>
    public void Exit() => Monitor.Exit(_gate);

    /// <summary>
    /// Runs chunks 0..<paramref name="chunkCount"/>-1 of <paramref name="job"/> on the pool's threads and
    /// the calling thread, returning when all are done (rethrowing the first failure). The caller must
    /// hold the pool (<see cref="TryEnter"/>).
    /// </summary>
    public void Run(ParallelJob job, int chunkCount)
    {
        Debug.Assert(Monitor.IsEntered(_gate) && chunkCount > 0);
        // Close first: a worker still inside RunChunks for an earlier run (it finished its last chunk but has
        // not yet re-read the claim) sees a new generation with no chunk open, and its compare-exchange on the
        // old claim value fails, so it can no longer take a chunk of this run against this run's chunk count.
        int generation = ++_generation;
        Interlocked.Exchange(ref _claim, ((long)generation << 32) | Closed);
        _job = job;
        _chunkCount = chunkCount;
        _completed = 0;
        _failure = null;
        _finished.Reset();
        // Open: publishes the fields above to every thread that reads this claim.
        Volatile.Write(ref _claim, (long)generation << 32);
        foreach (ManualResetEventSlim start in _start) start.Set();
        RunChunks(generation);
        // The other threads are usually finishing their last chunk: spin for them before blocking.
        if (_spins)
            for (long deadline = Stopwatch.GetTimestamp() + CompletionSpinTicks; Volatile.Read(ref _completed) < chunkCount && Stopwatch.GetTimestamp() < deadline;)
                Thread.SpinWait(SpinIterations);
        // The event is only a wake-up hint: a worker of an earlier run may set it late (after its last increment,
        // which that run's caller already saw), so completion is decided by the count alone.
        while (Volatile.Read(ref _completed) < chunkCount)
        {
            _finished.Wait();
            _finished.Reset();
        }
        _job = null;
        _failure?.Throw();
    }

    /// <summary>Convenience for tests and simple callers: <see cref="TryEnter"/>, <see cref="Run"/>, <see cref="Exit"/>.</summary>
    public bool TryRun(ParallelJob job, int chunkCount)
    {
        if (!TryEnter()) return false;
        try
        {
            Run(job, chunkCount);
            return true;
        }
        finally
        {
            Exit();
        }
    }

    private void RunChunks(int generation)
    {
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            int chunk = (int)claim;
            // A newer run, none left, or a run being set up: a chunk is only claimed while its run is the current, open one.
            // _chunkCount may already be a newer run's here, but then the claim has changed and the exchange fails.
            if ((int)(claim >> 32) != generation || chunk >= Volatile.Read(ref _chunkCount)) return;
            if (Interlocked.CompareExchange(ref _claim, claim + 1, claim) != claim) continue;
            try
            {
                _job!.RunChunk(chunk);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            if (Interlocked.Increment(ref _completed) == _chunkCount) _finished.Set();
        }
    }

    private void WorkerLoop(object? state)
    {
        var start = (ManualResetEventSlim)state!;
        while (true)
        {
            // Decode issues a job every few microseconds to a few hundred (one per linear layer, attention and norms
            // between them): waiting awake that long lets the next job start without a kernel wake-up.
            if (_spins)
                for (long deadline = Stopwatch.GetTimestamp() + WorkerSpinTicks; !start.IsSet && Stopwatch.GetTimestamp() < deadline;)
                    Thread.SpinWait(SpinIterations);
            start.Wait();
            start.Reset();
            RunChunks(Volatile.Read(ref _generation));
        }
    }
}
