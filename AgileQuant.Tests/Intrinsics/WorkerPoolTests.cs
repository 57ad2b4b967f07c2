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

/// <summary>
/// Several callers racing for one pool with short jobs of different chunk counts: every run must execute each of
/// its chunks exactly once, and no chunk may run after its run returned (the caller then reuses the job).
/// </summary>
public sealed class WorkerPoolRaceTests
{
    private sealed class CheckedJob : ParallelJob
    {
        public int[] Hits = new int[64];
        public int ChunkCount;
        public volatile bool Open;
        public int LateChunks;
        public int Spin;

        public override void RunChunk(int chunk)
        {
            if (!Open || chunk >= ChunkCount) Interlocked.Increment(ref LateChunks);
            if (Spin > 0) Thread.SpinWait(Spin);
            Interlocked.Increment(ref Hits[chunk]);
            if (!Open) Interlocked.Increment(ref LateChunks);
        }
    }

    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void EveryChunkRunsExactlyOnceInsideItsRun(int threads)
    {
        WorkerPool pool = WorkerPool.Shared(threads);
        const int Callers = 3;
        TimeSpan duration = TimeSpan.FromSeconds(3); // the race needs a preemption at one exact point: give it many runs
        var problems = new List<string>();
        long totalRuns = 0;
        int failed = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Thread[] callers = Enumerable.Range(0, Callers).Select(caller => new Thread(() =>
        {
            var random = new Random(caller);
            var job = new CheckedJob();
            int i = 0, pooledRuns = 0;
            for (; clock.Elapsed < duration && Volatile.Read(ref failed) == 0; i++)
            {
                int chunks = random.Next(1, 40);
                Array.Clear(job.Hits);
                job.ChunkCount = chunks;
                job.Spin = random.Next(4) == 0 ? random.Next(1, 200) : 0;
                job.Open = true;
                if (!pool.TryRun(job, chunks)) continue; // busy: try again, so the pool goes from run to run without a pause
                job.Open = false;
                pooledRuns++;
                int wrong = job.Hits.Take(chunks).Count(h => h != 1);
                if (wrong == 0 && Volatile.Read(ref job.LateChunks) == 0) continue;
                Interlocked.Increment(ref failed);
                lock (problems) problems.Add($"caller {caller}, run {i} ({chunks} chunks): {wrong} chunks not run exactly once, {job.LateChunks} ran outside the run");
            }
            Interlocked.Add(ref totalRuns, pooledRuns);
            Thread.Sleep(5);
            if (Volatile.Read(ref job.LateChunks) > 0) lock (problems) problems.Add($"caller {caller}: a chunk ran after its run returned");
        }) { IsBackground = true }).ToArray();
        foreach (Thread thread in callers) thread.Start();
        foreach (Thread thread in callers) Assert.That(thread.Join(TimeSpan.FromMinutes(2)), "a caller hung");
        TestContext.Out.WriteLine($"{totalRuns} pooled runs by {Callers} callers on a pool of {threads} threads in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.That(problems, Is.Empty);
    }
}
