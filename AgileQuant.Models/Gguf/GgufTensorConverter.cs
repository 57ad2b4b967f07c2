using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.InteropServices;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Turns GGUF tensors into runtime weights in the <see cref="GgmlLoadFormat"/> that <see cref="GgmlTypeTraits"/> gives
/// their type: Q4_0 into a symmetric <see cref="PackedInt4Matrix"/> with groups of 32 (nibbles and scales carried over
/// exactly, no FP32 detour), Q8_0, Q5_0, Q5_1, Q5_K and Q6_K into a <see cref="GroupedInt8Matrix"/> (int8 codes with the
/// blocks' scales and minimums per group of 32 or 16, the file's values exactly), Q4_1, Q2_K, Q3_K, Q4_K, IQ4_NL and
/// IQ4_XS into a <see cref="SuperBlockInt4Matrix"/> (codes and scales carried over exactly by the type's
/// <see cref="GgmlSuperBlockDecoding"/>), every other readable type into FP32 through its reference dequantizer. A type
/// the table does not read is refused.
/// Shapes are checked against the config, every block scale must be finite, and every tensor
/// must be taken exactly once (<see cref="RequireAllTaken"/>). Each tensor's mapped pages are released once it is
/// converted (<see cref="GgufTensorData.Release"/>), so loading holds at most one tensor's file bytes resident.
/// </summary>
internal sealed class GgufTensorConverter
{
    private readonly GgufTensorData _data;
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);
    // Grow-only staging reused by every tensor (the packed formats copy what they keep): one buffer the size of the
    // largest tensor instead of a fresh large array per tensor left for the collector.
    private byte[] _stagedBytes = [];
    private float[] _stagedScales = [];
    private Half[] _stagedHalves = [];
    private sbyte[] _stagedSubScales = [];
    private byte[] _stagedSubMins = [];

    public GgufTensorConverter(GgufTensorData data) => _data = data;

    private string FilePath => _data.File.FilePath;

    public bool Has(string name) => _data.File.FindTensor(name) is not null;

    /// <summary>The tensor <paramref name="name"/> after checking it is (rows, cols), i.e. ggml shape [cols, rows] (or [cols] when rows is 0).</summary>
    private GgufTensorInfo Find(string name, int rows, int cols)
    {
        GgufTensorInfo tensor = _data.File.FindTensor(name)
            ?? throw new ModelFormatException(FilePath, name, $"missing: the metadata implies a tensor of shape {ShapeText(rows, cols)}");
        long[] expected = rows == 0 ? [cols] : [cols, rows];
        if (!tensor.Shape.SequenceEqual(expected))
            throw new ModelFormatException(FilePath, name, $"expected ggml shape [{string.Join(", ", expected)}] from the metadata, found [{string.Join(", ", tensor.Shape)}]");
        if (tensor.ElementCount > Array.MaxLength)
            throw new ModelFormatException(FilePath, name, $"expected at most {Array.MaxLength} elements per tensor, found {tensor.ElementCount}");
        _taken.Add(name);
        return tensor;
    }

    private static string ShapeText(int rows, int cols) => rows == 0 ? $"[{cols}]" : $"[{cols}, {rows}] (ggml order)";

    /// <summary>A vector (n) as FP32.</summary>
    public float[] TakeVector(string name, int n) => ToFloats(Find(name, 0, n), 1, n);

    /// <summary>A (rows, cols) table dequantized to FP32 (token embeddings, which are looked up, not multiplied).</summary>
    public float[] TakeTable(string name, int rows, int cols) => ToFloats(Find(name, rows, cols), rows, cols);

    /// <summary>
    /// A (rows, cols) token-embedding table kept as the file's blocks when its type loads packed (rows dequantized on
    /// lookup, <see cref="GgmlEmbeddingRows"/>); null for the types that load as FP32, which <see cref="TakeTable"/> reads.
    /// </summary>
    public GgmlEmbeddingRows? TakeStoredTable(string name, int rows, int cols)
    {
        GgufTensorInfo tensor = Find(name, rows, cols);
        GgmlTypeTraits traits = Readable(tensor);
        if (!traits.LoadsPacked || tensor.ByteSize > Array.MaxLength) return null;
        int rowBytes = RowBytes(tensor, cols);
        byte[] blocks = GC.AllocateUninitializedArray<byte>((int)tensor.ByteSize); // (rows, rowBytes) as stored
        ForRowRanges(rows, (begin, end) =>
        {
            for (int r = begin; r < end; r++)
            {
                ReadOnlySpan<byte> row = _data.Bytes(tensor, (long)r * rowBytes, rowBytes);
                RequireFiniteScales(tensor, traits, r, row);
                row.CopyTo(blocks.AsSpan(r * rowBytes, rowBytes));
            }
        });
        _data.Release(tensor); // copied: its file pages need not stay resident
        return new GgmlEmbeddingRows(traits, blocks, rows, cols);
    }

    /// <summary>A (rows, cols) weight in the packed format matching its ggml type.</summary>
    public IWeightMatrix TakeMatrix(string name, int rows, int cols)
    {
        GgufTensorInfo tensor = Find(name, rows, cols);
        return Readable(tensor).LoadFormat switch
        {
            GgmlLoadFormat.PackedInt4 => ToPackedInt4(tensor, rows, cols),
            GgmlLoadFormat.GroupedInt8 => ToGroupedInt8(tensor, rows, cols),
            GgmlLoadFormat.SuperBlockInt4 => ToSuperBlockInt4(tensor, rows, cols),
            GgmlLoadFormat.Fp32 => new Fp32Matrix(ToFloats(tensor, rows, cols), rows, cols),
            GgmlLoadFormat format => throw new UnreachableException($"no conversion to {format}"),
            null => throw new UnreachableException("Readable returned an unreadable type"),
        };
    }

    /// <summary>Lets go of the staging buffers (the next tensor allocates its own), so that a collection can return them.</summary>
    public void ReleaseStaging()
    {
        _stagedBytes = [];
        _stagedScales = [];
        _stagedHalves = [];
        _stagedSubScales = [];
        _stagedSubMins = [];
    }

    /// <summary>Throws naming the first tensor no mapping took.</summary>
    public void RequireAllTaken()
    {
        foreach (GgufTensorInfo tensor in _data.File.Tensors)
            if (!_taken.Contains(tensor.Name))
                throw new ModelFormatException(FilePath, tensor.Name,
                    $"unexpected tensor [{string.Join(", ", tensor.Shape)}] {tensor.Type}: the metadata does not account for it (wrong block_count or a different architecture?)");
    }

    // Any readable type → FP32 through the table's reference dequantizer, row by row.
    private float[] ToFloats(GgufTensorInfo tensor, int rows, int cols)
    {
        GgmlTypeTraits traits = Readable(tensor);
        var values = new float[(long)Math.Max(rows, 1) * cols]; // (rows, cols)
        int rowBytes = RowBytes(tensor, cols);
        ForRowRanges(Math.Max(rows, 1), (begin, end) =>
        {
            for (int r = begin; r < end; r++)
            {
                ReadOnlySpan<byte> row = _data.Bytes(tensor, (long)r * rowBytes, rowBytes);
                RequireFiniteScales(tensor, traits, r, row);
                traits.DequantizeRow(row, values.AsSpan(r * cols, cols));
            }
        });
        _data.Release(tensor); // converted: its file pages need not stay resident
        return values;
    }

    /// <summary>The table row of <paramref name="tensor"/>'s type, refusing a type this library does not read.</summary>
    private GgmlTypeTraits Readable(GgufTensorInfo tensor) =>
        GgmlTypeTraits.Find(tensor.Type) is { IsReadable: true } traits ? traits
            : throw new ModelFormatException(FilePath, tensor.Name, $"expected type {GgmlTypeTraits.ReadableTypeNames}, found {tensor.Type} (not supported)");

    /// <summary>Bytes of one row of <paramref name="cols"/> elements (whole blocks: the header reader checked the row length).</summary>
    private int RowBytes(GgufTensorInfo tensor, int cols) => (int)Readable(tensor).RowBytes(cols);

    // Q4_0 block b of a row → columns [32b, 32b + 32) of a PackedInt4Matrix row: our byte 16b + k holds
    // columns 32b + 2k (low) and 32b + 2k + 1 (high); ggml's byte j holds j (low) and j + 16 (high).
    private PackedInt4Matrix ToPackedInt4(GgufTensorInfo tensor, int rows, int cols)
    {
        Debug.Assert(tensor.Type == GgmlType.Q4_0, "PackedInt4 is the load format of Q4_0 blocks only");
        GgmlTypeTraits traits = Readable(tensor);
        const int groupSize = BlockQ4_0.Elements;
        int groups = cols / groupSize, rowBytes = RowBytes(tensor, cols);
        int packedRowBytes = (cols + PackedInt4Matrix.BlockColumns - 1) / PackedInt4Matrix.BlockColumns * (PackedInt4Matrix.BlockColumns / 2);
        Span<byte> packed = Staged(ref _stagedBytes, (long)rows * packedRowBytes); // (rows, packedRowBytes), zero padding past cols
        Span<float> scales = Staged(ref _stagedScales, (long)rows * groups);     // (rows, groups)
        packed.Clear();
        byte[] packedArray = _stagedBytes;
        float[] scaleArray = _stagedScales;
        ForRowRanges(rows, (begin, end) =>
        {
            Span<byte> nibbles = stackalloc byte[groupSize];
            for (int r = begin; r < end; r++)
            {
                ReadOnlySpan<byte> row = _data.Bytes(tensor, (long)r * rowBytes, rowBytes);
                RequireFiniteScales(tensor, traits, r, row);
                ReadOnlySpan<BlockQ4_0> blocks = MemoryMarshal.Cast<byte, BlockQ4_0>(row);
                for (int b = 0; b < groups; b++)
                {
                    ReadOnlySpan<byte> qs = MemoryMarshal.AsBytes(blocks.Slice(b, 1)).Slice(2, groupSize / 2);
                    Span<byte> destination = packedArray.AsSpan((int)((long)r * packedRowBytes) + b * groupSize / 2, groupSize / 2);
                    scaleArray[r * groups + b] = (float)blocks[b].Scale;
                    if (Vector128.IsHardwareAccelerated)
                    {
                        RepackQ4_0Block(qs, destination);
                        continue;
                    }
                    for (int j = 0; j < groupSize / 2; j++)
                    {
                        nibbles[j] = (byte)(qs[j] & 0xF);
                        nibbles[j + groupSize / 2] = (byte)(qs[j] >> 4);
                    }
                    for (int k = 0; k < groupSize / 2; k++) destination[k] = (byte)(nibbles[2 * k] | nibbles[2 * k + 1] << 4);
                }
            }
        });
        _data.Release(tensor); // converted: its file pages need not stay resident
        // the file's blocks of 32 meet activations scaled per block of 32, as llama.cpp's Q8_0 activations (with per-group scales)
        return PackedInt4Matrix.FromPacked(packed, scales, [], rows, cols, groupSize, takesActivationGroupScales: true);
    }

    // Q4_0 qs[j] = e[j] | e[j + 16] << 4  →  row-major packed d[k] = e[2k] | e[2k + 1] << 4 (k < 16), one vector:
    // d[0..7] pairs the low nibbles (elements 0..15), d[8..15] the high nibbles (elements 16..31)
    internal static void RepackQ4_0Block(ReadOnlySpan<byte> qs, Span<byte> destination)
    {
        Vector128<byte> q = Vector128.Create(qs);
        Vector128<byte> low = q & Vector128.Create((byte)0x0F), high = Vector128.ShiftRightLogical(q, 4);
        Vector128<byte> evens = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
        Vector128<byte> odds = evens + Vector128<byte>.One;
        Vector128<byte> lowPairs = Vector128.Shuffle(low, evens) | Vector128.ShiftLeft(Vector128.Shuffle(low, odds), 4);
        Vector128<byte> highPairs = Vector128.Shuffle(high, evens) | Vector128.ShiftLeft(Vector128.Shuffle(high, odds), 4);
        Vector128.Create(lowPairs.GetLower(), highPairs.GetLower()).CopyTo(destination);
    }

    // Q8_0/Q5_0/Q5_1/Q5_K/Q6_K rows → a GroupedInt8Matrix holding the file's values (GgmlGroupedInt8Codec unpacks each row)
    private GroupedInt8Matrix ToGroupedInt8(GgufTensorInfo tensor, int rows, int cols)
    {
        GgmlTypeTraits traits = Readable(tensor);
        GgmlGroupedInt8Codec.GroupLayout layout = GgmlGroupedInt8Codec.LayoutOf(tensor.Type);
        int rowBytes = RowBytes(tensor, cols), groups = cols / layout.GroupSize;
        int factors = layout.HasSuperBlocks ? groups / layout.GroupsPerSuperBlock : groups; // floats per row: per group, or per super-block
        int subs = layout.HasSuperBlocks ? groups : 0;                                      // int8 sub-factors per row
        Span<sbyte> codes = MemoryMarshal.Cast<byte, sbyte>(Staged(ref _stagedBytes, (long)rows * cols)); // (rows, cols)
        byte[] codeArray = _stagedBytes;
        var scales = new float[(long)rows * factors];                                        // (rows, factors)
        var subScales = new sbyte[(long)rows * subs];                                        // (rows, groups) or empty
        float[] offsets = layout.HasOffsets ? new float[(long)rows * factors] : [];
        sbyte[] subOffsets = layout.HasOffsets ? new sbyte[(long)rows * subs] : [];
        ForRowRanges(rows, (begin, end) =>
        {
            for (int r = begin; r < end; r++)
            {
                ReadOnlySpan<byte> row = _data.Bytes(tensor, (long)r * rowBytes, rowBytes);
                RequireFiniteScales(tensor, traits, r, row);
                Span<float> rowOffsets = layout.HasOffsets ? offsets.AsSpan(r * factors, factors) : [];
                Span<sbyte> rowSubOffsets = layout.HasOffsets ? subOffsets.AsSpan(r * subs, subs) : [];
                GgmlGroupedInt8Codec.DecodeRow(tensor.Type, row, MemoryMarshal.Cast<byte, sbyte>(codeArray.AsSpan((int)((long)r * cols), cols)),
                    scales.AsSpan(r * factors, factors), subScales.AsSpan(r * subs, subs), rowOffsets, rowSubOffsets);
            }
        });
        _data.Release(tensor); // converted: its file pages need not stay resident
        return layout.HasSuperBlocks
            ? GroupedInt8Matrix.FromSuperBlockScales(codes, scales, subScales, offsets, subOffsets, rows, cols, layout.GroupSize, layout.GroupsPerSuperBlock)
            : GroupedInt8Matrix.FromGroupScales(codes, scales, offsets, rows, cols, layout.GroupSize);
    }

    // A row of blocks → one row of a SuperBlockInt4Matrix through the type's decoder (GgmlSuperBlockDecoding): codes,
    // integer sub-block scales and minimums, fp16 super-block scales, all as stored.
    private SuperBlockInt4Matrix ToSuperBlockInt4(GgufTensorInfo tensor, int rows, int cols)
    {
        GgmlTypeTraits traits = Readable(tensor);
        GgmlSuperBlockDecoding decoding = traits.SuperBlockDecoding ?? throw new UnreachableException($"{tensor.Type} loads as SuperBlockInt4 without a decoder");
        SuperBlockInt4Scheme scheme = decoding.Scheme;
        int rowBytes = RowBytes(tensor, cols), superBlocks = cols / scheme.SuperBlockSize, subBlocks = cols / scheme.SubBlockSize;
        int minSuper = scheme.HasMins ? superBlocks : 0, minSub = scheme.HasMins ? subBlocks : 0;
        Span<byte> packed = Staged(ref _stagedBytes, (long)rows * cols / 2);                   // (rows, cols / 2)
        Span<Half> halves = Staged(ref _stagedHalves, (long)rows * (superBlocks + minSuper)); // d (rows, superBlocks), then dmin
        Span<sbyte> subScales = Staged(ref _stagedSubScales, (long)rows * subBlocks);        // (rows, subBlocks)
        Span<byte> subMins = Staged(ref _stagedSubMins, (long)rows * minSub);                // (rows, subBlocks) or empty
        Span<Half> superScales = halves[..(rows * superBlocks)], superMins = halves[(rows * superBlocks)..];
        byte[] packedArray = _stagedBytes, subMinArray = _stagedSubMins;
        Half[] halfArray = _stagedHalves;
        sbyte[] subScaleArray = _stagedSubScales;
        ForRowRanges(rows, (begin, end) =>
        {
            for (int r = begin; r < end; r++)
            {
                ReadOnlySpan<byte> row = _data.Bytes(tensor, (long)r * rowBytes, rowBytes);
                RequireFiniteScales(tensor, traits, r, row);
                decoding.DecodeRow(row, new SuperBlockRow(packedArray.AsSpan(r * (cols / 2), cols / 2), halfArray.AsSpan(r * superBlocks, superBlocks),
                    halfArray.AsSpan(rows * superBlocks + r * minSuper, minSuper), subScaleArray.AsSpan(r * subBlocks, subBlocks), subMinArray.AsSpan(r * minSub, minSub)));
            }
        });
        _data.Release(tensor); // converted: its file pages need not stay resident
        return SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, superScales, superMins, subScales, subMins);
    }

    // Runs body(begin, end) over contiguous ranges of [0, rows) on all the machine's threads (a tensor's rows convert
    // independently); a failure is rethrown as a sequential pass would have thrown it: the one of the lowest range.
    private static void ForRowRanges(int rows, Action<int, int> body)
    {
        int parts = Math.Max(1, Math.Min(Environment.ProcessorCount, rows / MinRowsPerRange));
        if (parts == 1)
        {
            body(0, rows);
            return;
        }
        var failures = new Exception?[parts];
        Parallel.For(0, parts, p =>
        {
            try { body((int)((long)rows * p / parts), (int)((long)rows * (p + 1) / parts)); }
            catch (Exception e) { failures[p] = e; }
        });
        if (failures.FirstOrDefault(f => f is not null) is { } first) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }

    private const int MinRowsPerRange = 64; // below this a tensor converts on the calling thread: a hand-off costs more than its rows

    // The first `length` elements of `buffer`, grown (not kept: contents are overwritten) when too short.
    private static Span<T> Staged<T>(ref T[] buffer, long length)
    {
        if (buffer.LongLength < length) buffer = GC.AllocateUninitializedArray<T>((int)length); // length <= Array.MaxLength: Find checked the element count
        return buffer.AsSpan(0, (int)length);
    }

    private void RequireFiniteScales(GgufTensorInfo tensor, GgmlTypeTraits traits, int row, ReadOnlySpan<byte> bytes)
    {
        int block = traits.FirstNonFiniteScale(bytes, out Half value);
        if (block >= 0)
            throw new ModelFormatException(FilePath, tensor.Name, $"expected finite block scales, found {value} in row {row}, block {block}");
    }
}
