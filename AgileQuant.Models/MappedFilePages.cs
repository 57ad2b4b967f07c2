using System.Runtime.InteropServices;

namespace AgileQuant.Models;

/// <summary>
/// Hands the pages of a read-only file mapping back to the OS once their bytes have been converted into our own
/// storage, so that a loaded model's resident set is what it holds, not what it read. On Linux
/// (<c>madvise(MADV_DONTNEED)</c>) the pages stop counting in the process's resident set; the page cache keeps them,
/// and a later read of the same bytes faults them back in with the file's contents, so this is only a memory hint.
/// Elsewhere it does nothing.
/// </summary>
internal static unsafe partial class MappedFilePages
{
    private const int MadviseDontNeed = 4; // MADV_DONTNEED in <sys/mman.h> on Linux

    /// <summary>
    /// Releases the whole pages that hold [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// of a read-only file mapping: <paramref name="start"/> is rounded down and the end up to a page, and neighbouring
    /// bytes on those pages are simply read back from the file if used again.
    /// </summary>
    public static void Release(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || s_unavailable || start == null || length <= 0) return;
        nint pageMask = Environment.SystemPageSize - 1;
        nint first = (nint)start & ~pageMask;
        nint end = ((nint)start + (nint)length + pageMask) & ~pageMask;
        // A failure (e.g. EINVAL on an unusual mapping) only means the pages stay resident until unmapped.
        try { _ = Madvise(first, (nuint)(end - first), MadviseDontNeed); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_unavailable = true; }
    }

    private static bool s_unavailable; // no libc madvise to call (an unusual Linux): release nothing

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
