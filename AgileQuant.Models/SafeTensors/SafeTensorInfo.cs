namespace AgileQuant.Models.SafeTensors;

/// <summary>
/// One validated tensor entry of a safetensors file: name, element type, shape and where its bytes lie.
/// <c>ByteLength = ElementCount * ElementSize(DType)</c>, <c>ElementCount = product(Shape)</c> (1 for a scalar).
/// </summary>
public sealed class SafeTensorInfo
{
    internal SafeTensorInfo(string filePath, string name, SafeTensorsDType dtype, long[] shape,
        long elementCount, long dataOffset, long byteLength)
    {
        FilePath = filePath;
        Name = name;
        DType = dtype;
        Shape = Array.AsReadOnly(shape);
        ElementCount = elementCount;
        DataOffset = dataOffset;
        ByteLength = byteLength;
    }

    /// <summary>The file holding the tensor's bytes.</summary>
    public string FilePath { get; }

    /// <summary>The tensor's name as written in the header (e.g. <c>model.norm.weight</c>).</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public SafeTensorsDType DType { get; }

    /// <summary>The dimensions, outermost first (row-major); empty for a scalar.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Count;

    /// <summary>Product of <see cref="Shape"/> (1 for a scalar, 0 if any dimension is 0).</summary>
    public long ElementCount { get; }

    /// <summary>Absolute offset of the first byte in the file (8 + header length + data_offsets[0]).</summary>
    public long DataOffset { get; }

    /// <summary>Number of bytes (data_offsets[1] - data_offsets[0]).</summary>
    public long ByteLength { get; }

    /// <summary>The shape as 32-bit dimensions; throws <see cref="ModelFormatException"/> if one does not fit.</summary>
    public int[] ShapeAsInt32()
    {
        var dims = new int[Shape.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            if (Shape[i] > int.MaxValue)
                throw new ModelFormatException(FilePath, Name, $"expected dimension {i} to fit in 32 bits, found {Shape[i]}");
            dims[i] = (int)Shape[i];
        }
        return dims;
    }

    /// <summary>Shape formatted as <c>[1000, 64]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {DType} {ShapeText}";
}
