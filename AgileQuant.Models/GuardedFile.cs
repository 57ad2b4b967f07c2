using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace AgileQuant.Models;

/// <summary>
/// The one way every reader opens a file it was given. The path must name a regular file: symbolic links are followed and
/// their target is checked, and FIFOs, devices, sockets and directories are refused <em>before</em> anything is opened
/// (opening a FIFO waits for a writer; a link to <c>/dev/zero</c> reports length 0 and never ends). A file read whole is
/// read up to a cap for its kind, whatever length it reports (procfs files report 0), so a hostile path cannot hang a
/// reader or grow its memory past that cap. SECURITY.md, "Files", lists the caps.
/// </summary>
/// <remarks>
/// The opened handle is checked again, so a path swapped for a special file between the check and the open is refused
/// too, but only after an open that may already have waited (a FIFO put there in that window). On Windows the runtime
/// itself refuses handles that are not disk files, so only directories are told apart here.
/// </remarks>
internal static unsafe partial class GuardedFile
{
    /// <summary>Most bytes of a text corpus (evaluation or calibration text) read whole.</summary>
    public const long TextCorpusBytes = 256L << 20;

    /// <summary>Most bytes of a response file (<c>@FILE</c> on a command line) read whole.</summary>
    public const long ResponseFileBytes = 1L << 20;

    /// <summary>Opens <paramref name="path"/> for reading after checking that it is a regular file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="bufferSize">The stream's buffer (1: none, as for random access and memory maps).</param>
    /// <param name="options">Access hints for the stream.</param>
    /// <exception cref="ModelFormatException">
    /// The path names nothing, something other than a regular file (a FIFO is refused without being opened), or cannot be opened.
    /// </exception>
    public static FileStream OpenRead(string path, int bufferSize = 1, FileOptions options = FileOptions.None)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        FileKind found = KindOf(path);
        if (found is not (FileKind.Regular or FileKind.Unknown or FileKind.Missing))
            throw new ModelFormatException(path, null, $"expected a regular file, found {Describe(found)}{LinkNote(path)}");
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // A missing file is reported from the open itself, so the FileNotFoundException stays the inner exception.
            throw new ModelFormatException(path, null, found == FileKind.Missing
                ? $"expected a regular file, found nothing at this path{LinkNote(path)}"
                : "could not open the file: " + e.Message, e);
        }
        try
        {
            if (KindOf(stream.SafeFileHandle) is FileKind kind and not FileKind.Regular and not FileKind.Unknown)
                throw new ModelFormatException(path, null, $"expected a regular file, found {Describe(kind)} (the path changed while it was opened)");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        return stream;
    }

    /// <summary>
    /// The bytes of the regular file <paramref name="path"/>, at most <paramref name="maxBytes"/> of them: a larger file is
    /// refused before reading, and reading stops past the cap whatever length the file reported.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The cap for this kind of file.</param>
    /// <param name="whyCapped">Appended to the cap in the message when the file is larger (e.g. what to do instead).</param>
    /// <exception cref="ModelFormatException">Not a regular file, larger than the cap, or unreadable.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes, string? whyCapped = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        maxBytes = Math.Min(maxBytes, Array.MaxLength);
        using FileStream stream = OpenRead(path, bufferSize: 1, FileOptions.SequentialScan);
        try
        {
            long reported = stream.Length;
            if (reported > maxBytes)
                throw new ModelFormatException(path, null, $"expected at most {maxBytes} bytes{whyCapped}, found {reported}");
            // The reported length sizes the first buffer only: procfs files report 0, and a file may grow while read.
            byte[] buffer = new byte[Math.Max(reported, Math.Min(maxBytes, 4096))];
            Span<byte> probe = stackalloc byte[1];
            int filled = 0;
            while (true)
            {
                if (filled == buffer.Length)
                {
                    if (filled == maxBytes)
                    {
                        if (stream.Read(probe) == 0) break;
                        throw new ModelFormatException(path, null, $"expected at most {maxBytes} bytes{whyCapped}, found more (the file grew while it was read)");
                    }
                    Array.Resize(ref buffer, (int)Math.Min(maxBytes, Math.Max(2L * buffer.Length, 4096)));
                }
                int read = stream.Read(buffer, filled, buffer.Length - filled);
                if (read == 0) break;
                filled += read;
            }
            if (filled != buffer.Length) Array.Resize(ref buffer, filled);
            return buffer;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, null, "could not read the file: " + e.Message, e);
        }
    }

    /// <summary>
    /// The text of <paramref name="path"/> (at most <paramref name="maxBytes"/> bytes), decoded as <see cref="File.ReadAllText(string)"/>
    /// does (a byte-order mark chooses the encoding, else UTF-8), or strictly with <paramref name="encoding"/> when given.
    /// </summary>
    /// <exception cref="ModelFormatException">As <see cref="ReadAllBytes"/>, or the bytes are not valid in <paramref name="encoding"/>.</exception>
    public static string ReadAllText(string path, long maxBytes, Encoding? encoding = null)
    {
        byte[] bytes = ReadAllBytes(path, maxBytes);
        try
        {
            using var reader = new StreamReader(new MemoryStream(bytes), encoding ?? Encoding.UTF8, detectEncodingFromByteOrderMarks: encoding is null);
            return reader.ReadToEnd();
        }
        catch (DecoderFallbackException e)
        {
            throw new ModelFormatException(path, null, $"expected {encoding!.WebName} text, found an invalid byte sequence: {e.Message}", e);
        }
    }

    /// <summary>The lines of <paramref name="path"/> (at most <paramref name="maxBytes"/> bytes) as <see cref="File.ReadAllLines(string)"/> splits them.</summary>
    /// <exception cref="ModelFormatException">As <see cref="ReadAllText"/>.</exception>
    public static string[] ReadAllLines(string path, long maxBytes)
    {
        using var reader = new StringReader(ReadAllText(path, maxBytes));
        var lines = new List<string>();
        while (reader.ReadLine() is string line) lines.Add(line);
        return [.. lines];
    }

    private static string LinkNote(string path) => LinkTarget(path) is string resolved ? $" (the path is a link to {resolved})" : "";

    /// <summary>What a path or handle names.</summary>
    internal enum FileKind
    {
        /// <summary>The type could not be told (no native stat on this platform): treated as a regular file, reads still capped.</summary>
        Unknown,
        Missing,
        Regular,
        Directory,
        Fifo,
        CharacterDevice,
        BlockDevice,
        Socket,
        Other,
    }

    private static string Describe(FileKind kind) => kind switch
    {
        FileKind.Directory => "a directory",
        FileKind.Fifo => "a FIFO (named pipe), which is never opened since that waits for a writer",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Socket => "a socket",
        _ => "a special file",
    };

    private static string? LinkTarget(string path)
    {
        try
        {
            return File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // a loop or an unreadable link: the kind says what matters
        }
    }

    /// <summary>What <paramref name="path"/> names, following symbolic links.</summary>
    internal static FileKind KindOf(string path)
    {
        if (OperatingSystem.IsWindows() || s_noNativeStat)
            return Directory.Exists(path) ? FileKind.Directory : File.Exists(path) ? FileKind.Unknown : FileKind.Missing;
        byte* status = stackalloc byte[FileStatusBufferBytes];
        try
        {
            return Stat(path, status) == 0 ? KindOfMode(*(int*)(status + FileStatusModeOffset)) : FileKind.Missing;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_noNativeStat = true;
            return KindOf(path);
        }
    }

    private static FileKind KindOf(SafeFileHandle handle)
    {
        if (OperatingSystem.IsWindows() || s_noNativeStat) return FileKind.Unknown;
        byte* status = stackalloc byte[FileStatusBufferBytes];
        try
        {
            return FStat(handle, status) == 0 ? KindOfMode(*(int*)(status + FileStatusModeOffset)) : FileKind.Unknown;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_noNativeStat = true;
            return FileKind.Unknown;
        }
    }

    // The runtime's own stat shim (dotnet/runtime src/native/libs/System.Native/pal_io.h): one FileStatus layout on every
    // Unix, whose second int32 is the mode with the PAL's S_IF* type bits. Only that field is read; the buffer is larger
    // than the struct so that fields added after it cannot overrun.
    private const int FileStatusBufferBytes = 512, FileStatusModeOffset = 4;

    private static FileKind KindOfMode(int mode) => (mode & 0xF000) switch
    {
        0x8000 => FileKind.Regular,         // S_IFREG
        0x4000 => FileKind.Directory,       // S_IFDIR
        0x1000 => FileKind.Fifo,            // S_IFIFO
        0x2000 => FileKind.CharacterDevice, // S_IFCHR
        0x6000 => FileKind.BlockDevice,     // S_IFBLK
        0xC000 => FileKind.Socket,          // S_IFSOCK
        _ => FileKind.Other,
    };

    private static bool s_noNativeStat; // the shim is missing (an unusual host): types are not told apart, reads stay capped

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_Stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, byte* output);

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_FStat")]
    private static partial int FStat(SafeFileHandle fd, byte* output);
}
