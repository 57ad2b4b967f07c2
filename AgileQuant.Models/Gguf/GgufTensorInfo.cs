namespace AgileQuant.Models.Gguf;

/// <summary>
/// A tensor described in a GGUF header. <see cref="Shape"/> is in ggml order: <c>Shape[0]</c> is the
/// innermost (contiguous) dimension, so a PyTorch (rows, cols) weight appears as [cols, rows].
/// </summary>
/// <param name="Name">The tensor's name, e.g. <c>blk.0.attn_q.weight</c>.</param>
/// <param name="Shape">Dimensions, innermost first (ggml <c>ne</c>).</param>
/// <param name="Type">Element type.</param>
/// <param name="RelativeOffset">Byte offset from the start of the data section (a multiple of the alignment).</param>
/// <param name="AbsoluteOffset">Byte offset from the start of the file.</param>
/// <param name="ElementCount">Product of <paramref name="Shape"/>.</param>
/// <param name="ByteSize">Bytes of tensor data: ElementCount / elementsPerBlock * bytesPerBlock.</param>
public sealed record GgufTensorInfo(
    string Name,
    IReadOnlyList<long> Shape,
    GgmlType Type,
    long RelativeOffset,
    long AbsoluteOffset,
    long ElementCount,
    long ByteSize);
