using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// Several callers racing for one pool with short jobs of different chunk counts: every run must execute each of
/// its chunks exactly once, and no chunk may run after its run returned (the caller then reuses the job).
/// Before <c>WorkerPool.Run</c> closed the claim during setup and stopped trusting its completion event, this failed
/// within seconds in a Release build on a loaded 2-core machine (a chunk not run, a chunk run after its run returned).
/// It depends on preemption at one exact point, so it is a statistical guard, not a deterministic reproduction.
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
