// Two checks of qemu-aarch64 user mode that use nothing of AgileQuant (docs/arm64-emulation.md):
//
//   smc  ARM64 code is rewritten in place and run again, once through the same mapping it runs from (RWX) and once
//        through a second, writable mapping of the same memory (an RW alias of an RX view: what .NET's W^X does for
//        every code patch). Real hardware runs the new code in both cases (after the usual cache maintenance); an
//        emulator that only watches writes to the executing address keeps running its stale translation in the second.
//   gc   managed code only: fresh strings are stored into long-lived containers while large arrays keep triggering
//        background GCs (each start and end of one makes the runtime rewrite its GC write barrier through such an
//        alias); every string is then compared with its expected text. A string that was freed while still referenced
//        reads back as garbage.
//
//   madvise  what madvise(MADV_DONTNEED) does here: on an anonymous private page Linux drops the contents (reads back
//        zeros); on a shared read-only file mapping the pages are read back from the file (what AgileQuant's
//        MappedFilePages.Release relies on). Reports both, and fails only when the file mapping reads back wrong bytes.
//
// Usage: QemuCheck smc | madvise FILE | gc [rounds]. Prints one line per check and exits 0 when the check passed, 1 when it failed.
using System.Runtime.InteropServices;

internal static unsafe class Program
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapShared = 1, MapPrivate = 2, MapAnonymous = 0x20;

    private static int Main(string[] args)
    {
        string check = args.FirstOrDefault() ?? "";
        if (!OperatingSystem.IsLinux() || check == "smc" && RuntimeInformation.ProcessArchitecture != Architecture.Arm64)
        {
            Console.WriteLine("qemu-check: needs Linux (and arm64, natively or emulated, for smc)");
            return 2;
        }
        return check switch
        {
            "smc" => SelfModifyingCode(),
            "madvise" => Madvise(args.Length > 1 ? args[1] : throw new ArgumentException("madvise needs a file path")),
            "gc" => Collector(args.Length > 1 ? int.Parse(args[1]) : 40),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.WriteLine("usage: QemuCheck smc | madvise FILE | gc [rounds]");
        return 2;
    }

    // ---- smc ----------------------------------------------------------------------------------------------------

    private const uint Ret = 0xD65F03C0;

    // mov w0, #value (value < 65536)
    private static uint MovW0(int value) => 0x52800000u | (uint)value << 5;

    private static int SelfModifyingCode()
    {
        // Control: one RWX mapping, written and run at the same address.
        byte* rwx = Map(null, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous, -1);
        int sameBefore = WriteAndRun(rwx, rwx, 1), sameAfter = WriteAndRun(rwx, rwx, 2);

        // As .NET's W^X: a memfd mapped twice, written through the RW view, run from the RX view.
        int fd = memfd_create("qemu-check", 0);
        if (fd < 0 || ftruncate(fd, PageBytes) != 0) throw new InvalidOperationException($"memfd: errno {Marshal.GetLastPInvokeError()}");
        byte* rw = Map(null, ProtRead | ProtWrite, MapShared, fd);
        byte* rx = Map(null, ProtRead | ProtExec, MapShared, fd);
        int aliasBefore = WriteAndRun(rw, rx, 1), aliasAfter = WriteAndRun(rw, rx, 2);

        bool ok = sameBefore == 1 && sameAfter == 2 && aliasBefore == 1 && aliasAfter == 2;
        Console.WriteLine($"qemu-check smc: same mapping 1 -> {sameBefore}, 2 -> {sameAfter}; RW alias of an RX view 1 -> {aliasBefore}, 2 -> {aliasAfter}: "
            + (ok ? "ok" : "FAILED (code rewritten through a second mapping still runs the old instructions)"));
        return ok ? 0 : 1;
    }

    private const int PageBytes = 4096;

    // Writes `mov w0, #value; ret` at `write` (and a cache-maintenance routine 64 bytes on), makes the new
    // instructions visible to instruction fetch at `run` as the architecture requires, then calls them 3 times.
    private static int WriteAndRun(byte* write, byte* run, int value)
    {
        var code = (uint*)write;
        code[0] = MovW0(value);
        code[1] = Ret;
        // flush(x0): dc cvau, x0; dsb ish; ic ivau, x0; dsb ish; isb; ret
        uint[] flush = [0xD50B7B20, 0xD5033B9F, 0xD50B7520, 0xD5033B9F, 0xD5033FDF, Ret];
        for (int i = 0; i < flush.Length; i++) code[16 + i] = flush[i];
        ((delegate* unmanaged<nint, void>)(run + 64))((nint)run);
        var function = (delegate* unmanaged<int>)run;
        int result = 0;
        for (int i = 0; i < 3; i++) result = function();
        return result;
    }

    private static byte* Map(byte* address, int protection, int flags, int fd)
    {
        nint p = mmap(address, PageBytes, protection, flags, fd, 0);
        if (p == -1) throw new InvalidOperationException($"mmap: errno {Marshal.GetLastPInvokeError()}");
        return (byte*)p;
    }

    [DllImport("libc", SetLastError = true)] private static extern nint mmap(byte* address, nuint length, int protection, int flags, int fd, nint offset);
    [DllImport("libc", SetLastError = true)] private static extern int memfd_create(string name, uint flags);
    [DllImport("libc", SetLastError = true)] private static extern int ftruncate(int fd, nint length);

    // ---- madvise ------------------------------------------------------------------------------------------------

    private const int AdviseDontNeed = 4;

    private static int Madvise(string path)
    {
        byte* anonymous = Map(null, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1);
        anonymous[0] = 0xAB;
        int anonymousResult = madvise(anonymous, PageBytes, AdviseDontNeed);
        byte anonymousAfter = anonymous[0];

        byte[] expected = new byte[PageBytes];
        using (FileStream stream = File.OpenRead(path)) stream.ReadExactly(expected);
        int fd = open(path, 0);
        if (fd < 0) throw new InvalidOperationException($"open {path}: errno {Marshal.GetLastPInvokeError()}");
        byte* file = Map(null, ProtRead, MapShared, fd);
        bool before = new ReadOnlySpan<byte>(file, PageBytes).SequenceEqual(expected);
        int fileResult = madvise(file, PageBytes, AdviseDontNeed);
        bool after = new ReadOnlySpan<byte>(file, PageBytes).SequenceEqual(expected);

        bool ok = before && after && fileResult == 0;
        Console.WriteLine($"qemu-check madvise: anonymous page: returned {anonymousResult}, first byte 0xAB -> 0x{anonymousAfter:X2} "
            + (anonymousAfter == 0 ? "(contents dropped, as Linux does)" : "(contents kept: DONTNEED ignored)")
            + $"; shared file mapping: returned {fileResult}, file bytes before {(before ? "ok" : "WRONG")}, after {(after ? "ok" : "WRONG")}: "
            + (ok ? "ok" : "FAILED"));
        return ok ? 0 : 1;
    }

    [DllImport("libc", SetLastError = true)] private static extern int madvise(byte* address, nuint length, int advice);
    [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags);

    // ---- gc -----------------------------------------------------------------------------------------------------

    private static int Collector(int rounds)
    {
        var names = new List<string>();                       // long-lived: promoted to gen2 early
        var set = new HashSet<string>(StringComparer.Ordinal);
        var retained = new List<byte[]>();
        int lost = 0;
        for (int round = 0; round < rounds && lost == 0; round++)
        {
            retained.Clear();
            for (int i = 0; i < 40; i++)
            {
                string name = $"round.{round}.item.{i}.weight";   // fresh gen0 string stored into old containers
                names.Add(name);
                set.Add(name);
                retained.Add(new byte[1536 * 1024]);            // large-object allocations: background GCs start and end
            }
            for (int k = 0; k < names.Count; k++)
            {
                string expected = $"round.{k / 40}.item.{k % 40}.weight";
                if (!string.Equals(names[k], expected, StringComparison.Ordinal) || !set.Contains(expected))
                {
                    if (lost++ < 3) Console.WriteLine($"qemu-check gc: round {round}: item {k} reads '{Printable(names[k])}', expected '{expected}'");
                }
            }
        }
        Console.WriteLine($"qemu-check gc: {names.Count} strings, {GC.CollectionCount(2)} gen2 collections, {lost} corrupted: " + (lost == 0 ? "ok" : "FAILED"));
        return lost == 0 ? 0 : 1;
    }

    private static string Printable(string s) =>
        new(s.Take(40).Select(c => c is >= ' ' and < (char)127 ? c : '?').ToArray());
}
