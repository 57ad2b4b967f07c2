using System.Buffers.Binary;

namespace AgileQuant.Models.Onnx;

/// <summary>
/// The initializers and node wiring of an ONNX model (<c>ModelProto.graph</c>), read by our own protocol-buffer
/// wire-format reader (no Google.Protobuf): <c>GraphProto.initializer</c> (TensorProto: dims 1, data_type 2,
/// float_data 4, int64_data 7, name 8, raw_data 9, external_data 13, data_location 14) and <c>GraphProto.node</c>
/// (NodeProto: input 1, output 2, name 3, op_type 4); field numbers from onnx/onnx, onnx/onnx.proto3.
/// Everything else is skipped. Tensors whose data lives in external files are refused.
/// </summary>
public sealed class OnnxModelFile
{
    /// <summary>Largest file read (the largest array): bigger models need external data, which is refused anyway.</summary>
    public static long MaxFileBytes => Array.MaxLength;

    private readonly Dictionary<string, OnnxTensor> _initializers;

    private OnnxModelFile(string filePath, long irVersion, string producer, List<OnnxTensor> initializers, List<OnnxNode> nodes)
    {
        FilePath = filePath;
        IrVersion = irVersion;
        Producer = producer;
        Initializers = initializers;
        Nodes = nodes;
        _initializers = new Dictionary<string, OnnxTensor>(initializers.Count, StringComparer.Ordinal);
        foreach (OnnxTensor t in initializers)
            if (!_initializers.TryAdd(t.Name, t))
                throw new ModelFormatException(filePath, t.Name, "expected unique initializer names, found this name twice");
    }

    /// <summary>The file read (or the name given to <see cref="Parse"/>).</summary>
    public string FilePath { get; }

    /// <summary><c>ModelProto.ir_version</c>.</summary>
    public long IrVersion { get; }

    /// <summary><c>ModelProto.producer_name</c> (e.g. <c>pytorch</c>).</summary>
    public string Producer { get; }

    /// <summary>The graph's initializers, in file order.</summary>
    public IReadOnlyList<OnnxTensor> Initializers { get; }

    /// <summary>The graph's nodes, in file (topological) order.</summary>
    public IReadOnlyList<OnnxNode> Nodes { get; }

    /// <summary>The initializer called <paramref name="name"/>, or null.</summary>
    public OnnxTensor? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _initializers.GetValueOrDefault(name);
    }

    /// <summary>Reads and validates <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is malformed, too large or uses external data.</exception>
    public static OnnxModelFile Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        return Parse(GuardedFile.ReadAllBytes(fullPath, MaxFileBytes, " (larger models keep tensors in external data, which is not supported)"), fullPath);
    }

    /// <summary>Parses a model held in memory; <paramref name="sourceName"/> names it in errors. The tensors keep references to <paramref name="bytes"/>.</summary>
    /// <exception cref="ModelFormatException">The bytes are malformed or use external data.</exception>
    public static OnnxModelFile Parse(byte[] bytes, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        ArgumentException.ThrowIfNullOrEmpty(sourceName);
        var reader = new ProtobufReader(bytes, sourceName, "ModelProto", 0);
        long irVersion = 0;
        string producer = "";
        bool sawGraph = false;
        var initializers = new List<OnnxTensor>();
        var nodes = new List<OnnxNode>();
        while (reader.TryReadKey(out int field, out WireType wire))
        {
            switch (field)
            {
                case 1:
                    reader.Expect(wire, WireType.Varint, "ModelProto.ir_version");
                    irVersion = reader.ReadInt64();
                    break;
                case 2:
                    reader.Expect(wire, WireType.LengthDelimited, "ModelProto.producer_name");
                    producer = reader.ReadString();
                    break;
                case 7:
                    reader.Expect(wire, WireType.LengthDelimited, "ModelProto.graph");
                    if (sawGraph) throw new ModelFormatException(sourceName, null, "expected one graph, found a second");
                    sawGraph = true;
                    ReadOnlySpan<byte> graph = reader.ReadLengthDelimited(out long graphOffset);
                    ReadGraph(bytes, graph, graphOffset, sourceName, initializers, nodes);
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        if (!sawGraph) throw new ModelFormatException(sourceName, null, "expected a graph (ModelProto field 7), found none");
        return new OnnxModelFile(sourceName, irVersion, producer, initializers, nodes);
    }

    private static void ReadGraph(byte[] file, ReadOnlySpan<byte> graph, long offset, string path, List<OnnxTensor> initializers, List<OnnxNode> nodes)
    {
        var reader = new ProtobufReader(graph, path, "GraphProto", offset);
        while (reader.TryReadKey(out int field, out WireType wire))
        {
            if (field == 1)
            {
                reader.Expect(wire, WireType.LengthDelimited, "GraphProto.node");
                ReadOnlySpan<byte> node = reader.ReadLengthDelimited(out long nodeOffset);
                nodes.Add(ReadNode(node, nodeOffset, path));
            }
            else if (field == 5)
            {
                reader.Expect(wire, WireType.LengthDelimited, "GraphProto.initializer");
                ReadOnlySpan<byte> tensor = reader.ReadLengthDelimited(out long tensorOffset);
                initializers.Add(ReadTensor(file, tensor, tensorOffset, path, initializers.Count));
            }
            else reader.Skip(wire);
        }
    }

    private static OnnxNode ReadNode(ReadOnlySpan<byte> node, long offset, string path)
    {
        var reader = new ProtobufReader(node, path, "NodeProto", offset);
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "", op = "";
        while (reader.TryReadKey(out int field, out WireType wire))
        {
            switch (field)
            {
                case 1: reader.Expect(wire, WireType.LengthDelimited, "NodeProto.input"); inputs.Add(reader.ReadString()); break;
                case 2: reader.Expect(wire, WireType.LengthDelimited, "NodeProto.output"); outputs.Add(reader.ReadString()); break;
                case 3: reader.Expect(wire, WireType.LengthDelimited, "NodeProto.name"); name = reader.ReadString(); break;
                case 4: reader.Expect(wire, WireType.LengthDelimited, "NodeProto.op_type"); op = reader.ReadString(); break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxNode(name, op, inputs, outputs);
    }

    private static OnnxTensor ReadTensor(byte[] file, ReadOnlySpan<byte> tensor, long offset, string path, int index)
    {
        var reader = new ProtobufReader(tensor, path, $"initializer #{index}", offset);
        var dims = new List<long>();
        int dataType = 0;
        string? name = null;
        long rawOffset = 0;
        int rawLength = -1;
        List<float>? floatData = null;
        List<long>? int64Data = null;
        bool otherTypedData = false, external = false, segment = false;
        while (reader.TryReadKey(out int field, out WireType wire))
        {
            switch (field)
            {
                case 1 when wire == WireType.Varint:
                    dims.Add(reader.ReadInt64());
                    break;
                case 1:
                    reader.Expect(wire, WireType.LengthDelimited, "TensorProto.dims");
                    ReadPackedVarints(reader.ReadLengthDelimited(out long dimsOffset), dimsOffset, path, dims);
                    break;
                case 2:
                    reader.Expect(wire, WireType.Varint, "TensorProto.data_type");
                    dataType = reader.ReadInt32("data_type");
                    break;
                case 3:
                    segment = true;
                    reader.Skip(wire);
                    break;
                case 4 when wire == WireType.Fixed32:
                    (floatData ??= []).Add(BitConverter.UInt32BitsToSingle(reader.ReadFixed32()));
                    break;
                case 4:
                    reader.Expect(wire, WireType.LengthDelimited, "TensorProto.float_data");
                    ReadOnlySpan<byte> packed = reader.ReadLengthDelimited(out long packedOffset);
                    if (packed.Length % 4 != 0)
                        throw new ModelFormatException(path, name, $"expected packed float_data of a multiple of 4 bytes at byte {packedOffset}, found {packed.Length}");
                    floatData ??= new List<float>(packed.Length / 4);
                    for (int i = 0; i < packed.Length; i += 4) floatData.Add(BinaryPrimitives.ReadSingleLittleEndian(packed.Slice(i, 4)));
                    break;
                case 7 when wire == WireType.Varint:
                    (int64Data ??= []).Add(reader.ReadInt64());
                    break;
                case 7:
                    reader.Expect(wire, WireType.LengthDelimited, "TensorProto.int64_data");
                    ReadPackedVarints(reader.ReadLengthDelimited(out long int64Offset), int64Offset, path, int64Data ??= []);
                    break;
                case 5 or 6 or 10 or 11:
                    otherTypedData = true;
                    reader.Skip(wire);
                    break;
                case 8:
                    reader.Expect(wire, WireType.LengthDelimited, "TensorProto.name");
                    name = reader.ReadString();
                    break;
                case 9:
                    reader.Expect(wire, WireType.LengthDelimited, "TensorProto.raw_data");
                    rawLength = reader.ReadLengthDelimited(out rawOffset).Length;
                    break;
                case 13:
                    external = true;
                    reader.Skip(wire);
                    break;
                case 14:
                    reader.Expect(wire, WireType.Varint, "TensorProto.data_location");
                    if (reader.ReadInt64() == 1) external = true;
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        if (string.IsNullOrEmpty(name)) throw new ModelFormatException(path, null, $"initializer #{index}: expected a name, found none");
        if (external)
            throw new ModelFormatException(path, name, "expected the tensor's data inside the model file, found external data (re-save the model with all tensors embedded, e.g. onnx.save_model(model, path, save_as_external_data=False))");
        if (segment) throw new ModelFormatException(path, name, "expected a whole tensor, found a segmented one (TensorProto.segment)");
        long elements = 1;
        foreach (long d in dims)
        {
            if (d < 0) throw new ModelFormatException(path, name, $"expected non-negative dims, found [{string.Join(", ", dims)}]");
            if (d > 0 && elements > Array.MaxLength / d)
                throw new ModelFormatException(path, name, $"expected at most {Array.MaxLength} elements, found dims [{string.Join(", ", dims)}]");
            elements *= d;
        }
        var type = (OnnxDataType)dataType;
        int size = OnnxTensor.ElementSize(type);
        if (dataType == 0 || !Enum.IsDefined(type))
            throw new ModelFormatException(path, name, $"expected a known data type, found {dataType}");
        int typedSources = (floatData is null ? 0 : 1) + (int64Data is null ? 0 : 1) + (otherTypedData ? 1 : 0) + (rawLength >= 0 ? 1 : 0);
        if (typedSources > 1) throw new ModelFormatException(path, name, "expected the data in one field (raw_data or one typed field), found several");
        if (otherTypedData && type is OnnxDataType.Float or OnnxDataType.Int64)
            throw new ModelFormatException(path, name, $"expected {type} data in raw_data or {(type == OnnxDataType.Float ? "float_data" : "int64_data")}, found it in another typed field");
        if (rawLength >= 0)
        {
            if (size == 0) throw new ModelFormatException(path, name, $"expected no raw_data for {type} tensors, found {rawLength} bytes");
            if (rawLength != elements * size)
                throw new ModelFormatException(path, name, $"expected {elements} × {size} = {elements * size} bytes of raw_data for dims [{string.Join(", ", dims)}], found {rawLength}");
        }
        if (floatData is not null)
        {
            if (type != OnnxDataType.Float) throw new ModelFormatException(path, name, $"expected float_data only in FLOAT tensors, found it in a {type} tensor");
            if (floatData.Count != elements)
                throw new ModelFormatException(path, name, $"expected {elements} float_data values for dims [{string.Join(", ", dims)}], found {floatData.Count}");
        }
        if (int64Data is not null)
        {
            if (type != OnnxDataType.Int64) throw new ModelFormatException(path, name, $"expected int64_data only in INT64 tensors, found it in a {type} tensor");
            if (int64Data.Count != elements)
                throw new ModelFormatException(path, name, $"expected {elements} int64_data values for dims [{string.Join(", ", dims)}], found {int64Data.Count}");
        }
        if (typedSources == 0 && elements != 0)
            throw new ModelFormatException(path, name, $"expected data for {elements} elements, found none");
        ReadOnlyMemory<byte> raw = rawLength >= 0 ? file.AsMemory((int)rawOffset, rawLength) : ReadOnlyMemory<byte>.Empty;
        return new OnnxTensor(path, name, dims.ToArray(), type, elements, raw, rawLength >= 0, floatData?.ToArray(), int64Data?.ToArray());
    }

    private static void ReadPackedVarints(ReadOnlySpan<byte> packed, long offset, string path, List<long> values)
    {
        var reader = new ProtobufReader(packed, path, "packed repeated field", offset);
        while (reader.FileOffset < offset + packed.Length) values.Add(reader.ReadInt64());
    }
}
