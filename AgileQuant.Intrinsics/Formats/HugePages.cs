using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// Pinned arrays for the weight copies the kernels stream (<see cref="Int4RowBlocks"/>, <see cref="Int8RowBlocks"/>, the
/// panels of <see cref="Fp32Matrix"/>) whose 2 MiB-aligned interior Linux is asked to back with transparent huge pages:
/// <c>madvise(MADV_HUGEPAGE)</c> before the first write (so the first touch can fault in whole 2 MiB pages where the
/// kernel's THP mode is "madvise"), <c>madvise(MADV_COLLAPSE)</c> after the array is filled (for the ranges that were
/// already backed by 4 KiB pages). Elsewhere, or where the kernel refuses, the arrays are plain pinned arrays.
/// </summary>
/// <remarks>
/// Why: decode streams every weight once per token, tens of MB per matrix, so with 4 KiB pages each core takes a TLB
/// miss (a nested page walk in a virtual machine) every 4 KiB of each stream; with the same layout the W4A8 GEMV streamed
/// faster over huge pages, on one core and on two (docs/kernels.md, "Decode stream").
/// </remarks>
internal static partial class HugePages
{
    /// <summary>Bytes of one transparent huge page on x86-64 and the usual arm64 configuration.</summary>
    public const int PageBytes = 2 * 1024 * 1024;

    private const int AdviseHugePage = 14; // MADV_HUGEPAGE
    private const int AdviseCollapse = 25; // MADV_COLLAPSE (Linux 6.1+)

    /// <summary>
    /// A pinned array of <paramref name="length"/> elements, zeroed when <paramref name="zeroed"/>, its 2 MiB-aligned
    /// interior advised for huge pages before anything is written to it; call <see cref="Collapse{T}"/> once it is filled.
    /// </summary>
    public static T[] AllocatePinned<T>(int length, bool zeroed) where T : unmanaged
    {
        T[] array = GC.AllocateUninitializedArray<T>(length, pinned: true);
        Advise(array, AdviseHugePage);
        if (zeroed) Array.Clear(array);
        return array;
    }

    /// <summary>Asks Linux to move the filled 2 MiB-aligned interior of pinned <paramref name="array"/> onto huge pages now.</summary>
    public static void Collapse<T>(T[] array) where T : unmanaged => Advise(array, AdviseCollapse);

    // madvise over [start rounded up, end rounded down) to 2 MiB; a failure (old kernel, THP off) leaves the array as it is.
    private static unsafe void Advise<T>(T[] array, int advice) where T : unmanaged
    {
        if (!OperatingSystem.IsLinux() || array.Length == 0) return;
        nuint start = (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        nuint end = start + (nuint)array.Length * (nuint)sizeof(T);
        nuint first = (start + PageBytes - 1) & ~(nuint)(PageBytes - 1), last = end & ~(nuint)(PageBytes - 1);
        if (last <= first) return;
        try
        {
            _ = Madvise((nint)first, last - first, advice);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // no libc to ask (e.g. a static musl build without the symbol): stay on small pages
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
