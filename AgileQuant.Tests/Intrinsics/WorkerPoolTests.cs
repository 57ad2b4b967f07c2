using System.Collections.Concurrent;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Tests.Intrinsics;

public sealed class WorkerPoolTests
{
    private sealed class RecordingJob : ParallelJob
    {
        public readonly ConcurrentDictionary<int, byte> ThreadIds = new();
        public int[] Hits = [];

        public override void RunChunk(int chunk)
        {
            ThreadIds.TryAdd(Environment.CurrentManagedThreadId, 0);
            Interlocked.Increment(ref Hits[chunk]);
        }
    }

    [Test]
    public void SharedPoolIsOnePerThreadCount()
    {
        Assert.That(WorkerPool.Shared(2), Is.SameAs(WorkerPool.Shared(2)));
        Assert.That(WorkerPool.Shared(3), Is.Not.SameAs(WorkerPool.Shared(2)));
        Assert.That(WorkerPool.Shared(3).Threads, Is.EqualTo(3));
    }

    [Test]
    public void RunsEveryChunkOnceOnTheSameThreadsEveryTime()
    {
        WorkerPool pool = WorkerPool.Shared(2);
        var job = new RecordingJob();
        for (int run = 0; run < 500; run++)
        {
            job.Hits = new int[1 + run % 37];
            Assert.That(pool.TryRun(job, job.Hits.Length), Is.True);
            Assert.That(job.Hits, Is.All.EqualTo(1), $"run {run}");
        }
        // The calling thread plus at most one reused worker: no thread per call.
        Assert.That(job.ThreadIds, Has.Count.LessThanOrEqualTo(2));
    }

    [Test]
    public void AFailingChunkIsRethrownAndThePoolStaysUsable()
    {
        WorkerPool pool = WorkerPool.Shared(2);
        Assert.Throws<InvalidOperationException>(() => pool.TryRun(new FailingJob(), 16));
        var job = new RecordingJob { Hits = new int[8] };
        Assert.That(pool.TryRun(job, 8), Is.True);
        Assert.That(job.Hits, Is.All.EqualTo(1));
    }

    private sealed class FailingJob : ParallelJob
    {
        public override void RunChunk(int chunk) => throw new InvalidOperationException("chunk " + chunk);
    }
}
