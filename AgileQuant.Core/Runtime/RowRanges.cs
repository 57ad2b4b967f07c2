using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Core.Runtime;

/// <summary>A step of the forward pass whose rows are independent: it runs rows [begin, end) of the chunk.</summary>
internal interface IRowRangeStep
{
    /// <summary>Runs rows [<paramref name="begin"/>, <paramref name="end"/>).</summary>
    void Run(int begin, int end);
}

/// <summary>
/// Runs row-wise steps of the forward pass on the kernels' threads (<see cref="KernelThreads"/>): one contiguous row range
/// per thread once a step touches at least <see cref="ParallelElementThreshold"/> elements, else all rows on the calling
/// thread (decode, always). Allocates nothing per call; one per inference context.
/// </summary>
internal sealed class RowRanges(KernelThreads threads) : IChunkedWork
{
    /// <summary>Below this many elements a step runs on the calling thread: the hand-off would cost more than it saves.</summary>
    public const long ParallelElementThreshold = 32 * 1024;

    private IRowRangeStep? _step; // the step being run, while it runs
    private int _rows;

    /// <summary>The threads the steps (and attention) run on: the model kernel's.</summary>
    public KernelThreads Threads => threads;

    /// <summary>Runs <paramref name="step"/> over rows [0, <paramref name="rows"/>); <paramref name="elements"/>: what the step touches.</summary>
    public void Run(IRowRangeStep step, int rows, long elements)
    {
        int parts = elements >= ParallelElementThreshold ? Math.Min(threads.Count, rows) : 1;
        if (parts <= 1)
        {
            step.Run(0, rows);
            return;
        }
        _step = step;
        _rows = rows;
        try
        {
            threads.Run(this, parts);
        }
        finally
        {
            _step = null;
        }
    }

    /// <summary>Part <paramref name="part"/> of <paramref name="parts"/>: the rows [rows·part/parts, rows·(part+1)/parts).</summary>
    void IChunkedWork.RunChunk(int part, int parts) =>
        _step!.Run((int)((long)_rows * part / parts), (int)((long)_rows * (part + 1) / parts));
}
