using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>A dense FP32 weight matrix W (Rows, Cols), stored row-major.</summary>
/// <remarks>
/// SIMD kernels multiply by a second, repacked copy of W (<see cref="GetPanels"/>), built on first use
/// or by <see cref="Prepack"/> at load time. It costs as much memory as <see cref="Data"/> again
/// (plus padding of the last panel to <see cref="PanelRows"/> rows).
/// </remarks>
public sealed class Fp32Matrix : IWeightMatrix
{
    /// <summary>Rows of W per panel of the repacked copy: the width of the SIMD micro-kernel's tile.</summary>
    public const int PanelRows = 16;

    private const int PanelAlignmentBytes = 64;

    private PanelStorage? _panels;

    /// <summary>W (Rows, Cols), row-major: element (r, c) is at <c>r * Cols + c</c>.</summary>
    public float[] Data { get; }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <inheritdoc />
    public long ByteCount => (long)Rows * Cols * sizeof(float);

    /// <summary>Number of panels in the repacked copy: <c>ceil(Rows / PanelRows)</c>.</summary>
    public int PanelCount => (Rows + PanelRows - 1) / PanelRows;

    /// <summary>Wraps <paramref name="data"/> (not copied) as a (rows, cols) row-major matrix.</summary>
    public Fp32Matrix(float[] data, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (data.LongLength != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} elements for a {rows}x{cols} matrix, found {data.LongLength}.", nameof(data));
        if ((long)((rows + PanelRows - 1) / PanelRows) * PanelRows * cols > Array.MaxLength - PanelAlignmentBytes)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Expected at most {Array.MaxLength} padded elements, found a {rows}x{cols} matrix.");
        Data = data;
        Rows = rows;
        Cols = cols;
    }

    /// <summary>Row r of W (Cols elements).</summary>
    public ReadOnlySpan<float> Row(int r) => Data.AsSpan(r * Cols, Cols);

    /// <summary>
    /// W repacked as <see cref="PanelCount"/> panels of <see cref="PanelRows"/> rows, each panel k-major:
    /// element (r, c) is at <c>(r / 16) * 16 * Cols + c * 16 + r % 16</c>. Rows past <see cref="Rows"/>
    /// in the last panel are zero. Length <c>PanelCount * 16 * Cols</c>; the start is 64-byte aligned
    /// and never moves, so kernels read one whole cache line per column of a panel.
    /// </summary>
    /// <remarks>Built once on first call (thread-safe) from <see cref="Data"/>; later edits of Data are not seen.</remarks>
    public ReadOnlySpan<float> GetPanels()
    {
        PanelStorage panels = _panels ?? BuildPanels();
        return panels.Buffer.AsSpan(panels.Offset, panels.Length);
    }

    /// <summary>Builds the repacked copy now (e.g. at model load) rather than on the first multiplication.</summary>
    public void Prepack() => _ = GetPanels();

    /// <summary>Address of panel element 0; valid for the life of this matrix (the buffer is pinned).</summary>
    internal unsafe float* PanelPointer()
    {
        PanelStorage panels = _panels ?? BuildPanels();
        return (float*)Unsafe.AsPointer(ref panels.Buffer[panels.Offset]);
    }

    private PanelStorage BuildPanels()
    {
        int length = PanelCount * PanelRows * Cols;
        // Pinned (never moves), on huge pages where Linux allows, and over-allocated so the panels can start on a 64-byte boundary.
        float[] buffer = HugePages.AllocatePinned<float>(length + PanelAlignmentBytes / sizeof(float), zeroed: false);
        int offset = AlignmentOffset(buffer);
        Span<float> panels = buffer.AsSpan(offset, length);
        // panels (PanelCount, Cols, 16) ← W (Rows, Cols)
        for (int p = 0; p < PanelCount; p++)
        {
            Span<float> panel = panels.Slice(p * PanelRows * Cols, PanelRows * Cols);
            int rowsInPanel = Math.Min(PanelRows, Rows - p * PanelRows);
            if (rowsInPanel < PanelRows) panel.Clear();
            for (int i = 0; i < rowsInPanel; i++)
            {
                ReadOnlySpan<float> row = Row(p * PanelRows + i);
                for (int c = 0; c < row.Length; c++) panel[c * PanelRows + i] = row[c];
            }
        }
        HugePages.Collapse(buffer);
        var built = new PanelStorage(buffer, offset, length);
        return Interlocked.CompareExchange(ref _panels, built, null) ?? built;
    }

    private static unsafe int AlignmentOffset(float[] pinnedBuffer)
    {
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinnedBuffer));
        int misalignment = (int)(address & (PanelAlignmentBytes - 1));
        return misalignment == 0 ? 0 : (PanelAlignmentBytes - misalignment) / sizeof(float);
    }

    private sealed record PanelStorage(float[] Buffer, int Offset, int Length);
}
