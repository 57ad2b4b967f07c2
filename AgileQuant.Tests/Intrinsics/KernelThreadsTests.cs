using System.Collections.Concurrent;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Tests.Intrinsics;

/// <summary><see cref="KernelThreads"/>: the kernels' worker pool lent to other work, chunk by chunk.</summary>
public sealed class KernelThreadsTests
{
    private sealed class RecordingWork : IChunkedWork
    {
        public readonly ConcurrentDictionary<int, byte> ThreadIds = new();
        public readonly ConcurrentQueue<(int Chunk, int Count)> Calls = new();
        public int[] Hits = [];

        public void RunChunk(int chunk, int chunkCount)
        {
            ThreadIds.TryAdd(Environment.CurrentManagedThreadId, 0);
            Calls.Enqueue((chunk, chunkCount));
            Interlocked.Increment(ref Hits[chunk]);
        }
    }

    [Test]
    public void RunsEveryChunkOnceOnTheCallerAndThePoolThreads()
    {
        var threads = new KernelThreads(2);
        var work = new RecordingWork();
        for (int run = 0; run < 300; run++)
        {
            int chunks = 2 + run % 29;
            work.Hits = new int[chunks];
            threads.Run(work, chunks);
            Assert.That(work.Hits, Is.All.EqualTo(1), $"run {run}");
        }
        Assert.That(work.Calls.Select(c => c.Count), Has.None.EqualTo(1), "never the whole work in one call while the pool is free");
        Assert.That(work.ThreadIds, Has.Count.LessThanOrEqualTo(2), "the calling thread plus the pool's one worker");
    }

    [TestCase(1, 8)]
    [TestCase(2, 1)]
    public void OneThreadOrOneChunkRunsTheWholeWorkOnTheCallingThread(int threadCount, int chunks)
    {
        var work = new RecordingWork { Hits = new int[Math.Max(1, chunks)] };
        new KernelThreads(threadCount).Run(work, chunks);
        Assert.That(work.Calls, Is.EqualTo(new[] { (0, 1) }));
        Assert.That(work.ThreadIds.Keys, Is.EqualTo(new[] { Environment.CurrentManagedThreadId }));
    }

    [Test]
    public void WhileAKernelCallOfAnotherThreadHoldsTheSharedPoolTheCallerRunsTheWholeWork()
    {
        // the pool the kernels of two threads use: held by another caller, as by another context's matrix multiplication
        WorkerPool pool = WorkerPool.Shared(2);
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            Assert.That(pool.TryEnter(), Is.True);
            held.Set();
            release.Wait();
            pool.Exit();
        });
        holder.Start();
        held.Wait();
        try
        {
            var work = new RecordingWork { Hits = new int[6] };
            new KernelThreads(2).Run(work, 6);
            Assert.That(work.Calls, Is.EqualTo(new[] { (0, 1) }));
            Assert.That(work.ThreadIds.Keys, Is.EqualTo(new[] { Environment.CurrentManagedThreadId }));
        }
        finally
        {
            release.Set();
            holder.Join();
        }
    }

    [Test]
    public void AFailingChunkIsRethrownAndTheThreadsStayUsable()
    {
        var threads = new KernelThreads(2);
        Assert.Throws<InvalidOperationException>(() => threads.Run(new FailingWork(), 16));
        var work = new RecordingWork { Hits = new int[8] };
        threads.Run(work, 8);
        Assert.That(work.Hits, Is.All.EqualTo(1));
    }

    [Test]
    public void RejectsNoThreadsAndNoWork()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new KernelThreads(0));
        Assert.Throws<ArgumentNullException>(() => new KernelThreads(2).Run(null!, 4));
    }

    private sealed class FailingWork : IChunkedWork
    {
        public void RunChunk(int chunk, int chunkCount) => throw new InvalidOperationException("chunk " + chunk);
    }
}
