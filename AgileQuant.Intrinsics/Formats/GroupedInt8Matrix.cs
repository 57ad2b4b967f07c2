using System.Numerics;

namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// An 8-bit weight matrix W (Rows, Cols) with a float scale, and optionally a float offset, per group of
/// <see cref="GroupSize"/> (16 or 32) input columns: <c>W[r, c] = Scale(r, g) · Code(r, c) − Offset(r, g)</c>,
/// g = c / GroupSize, codes −128..127. The format that GGUF's 5-, 6- and 8-bit block types load into with their values
/// kept exactly (docs/kernels.md, "Grouped 8-bit weights"): Q8_0 (<c>d · q</c>), Q5_0 (<c>d · (q − 16)</c>), Q5_1
/// (<c>d · q + m</c>), Q5_K (<c>d · sc · q − dmin · m</c>) and Q6_K (<c>d · sc · (q − 32)</c>).
/// </summary>
/// <remarks>
/// <para>Scales come in one of two forms. Per group (<see cref="FromGroupScales"/>): one float scale (and offset) per
/// group. Per super-block (<see cref="FromSuperBlockScales"/>, the k-quants): a float scale per
/// <see cref="GroupsPerSuperBlock"/> groups times an integer sub-scale per group, <c>Scale(r, g) = super(r, g / S) ·
/// sub(r, g)</c> rounded once to float, which is exactly how ggml forms <c>d · sc</c>; offsets likewise. Kernels read the
/// compact form (1 byte per group instead of 4), and the value is the same float.</para>
/// <para>The value of an element is computed as the float expression <c>Scale · Code − Offset</c> (one rounding per
/// operation; without offsets <c>Scale · Code</c>), the order of ggml's dequantizers, so a matrix loaded from GGUF holds
/// ggml's values bit for bit. Offsets need groups of 32 (the activation sums the kernels subtract them with are per
/// 32 columns). Row r's codes start at <c>r · RowStride</c> of <see cref="Codes"/>; <see cref="RowStride"/> =
/// 32 · ceil(Cols / 32) with zero padding; the last group of a row may be short.</para>
/// </remarks>
public sealed class GroupedInt8Matrix : IWeightMatrix
{
    /// <summary>Columns the row stride is a multiple of (one 256-bit vector of int8).</summary>
    public const int BlockColumns = 32;

    private sbyte[]? _codes; // (Rows, RowStride) row-major; dropped once a SIMD kernel repacks the matrix (RepackToRowBlocks), rebuilt on request
    private float[]? _scales; // per group (Rows, GroupCount), or per super-block (Rows, SuperBlockCount); dropped with the codes, rebuilt on request
    private readonly sbyte[]? _subScales; // (Rows, GroupCount) with super-block scales, else null
    private float[]? _offsets; // shaped as _scales; null without offsets (or dropped with the codes, rebuilt on request)
    private readonly bool _hasOffsets;
    private readonly int _factorCount; // floats in _scales (and in _offsets when present)
    private readonly sbyte[]? _subOffsets; // shaped as _subScales; null without offsets or without super-blocks
    private GroupedInt8RowBlocks? _rowBlocks;

    private GroupedInt8Matrix(int rows, int cols, int groupSize, int groupsPerSuperBlock, sbyte[] codes,
        float[] scales, sbyte[]? subScales, float[]? offsets, sbyte[]? subOffsets)
    {
        Rows = rows;
        Cols = cols;
        GroupSize = groupSize;
        GroupsPerSuperBlock = groupsPerSuperBlock;
        _codes = codes;
        _scales = scales;
        _subScales = subScales;
        _offsets = offsets;
        _subOffsets = subOffsets;
        _hasOffsets = offsets is not null;
        _factorCount = scales.Length;
    }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <summary>Input columns per scale group: 16 or 32.</summary>
    public int GroupSize { get; }

    /// <summary>Groups per row: <c>ceil(Cols / GroupSize)</c>.</summary>
    public int GroupCount => (Cols + GroupSize - 1) / GroupSize;

    /// <summary>Groups sharing one float super-scale (a power of two); 1 for per-group scales.</summary>
    public int GroupsPerSuperBlock { get; }

    /// <summary>Super-blocks per row: <c>ceil(GroupCount / GroupsPerSuperBlock)</c> (= <see cref="GroupCount"/> for per-group scales).</summary>
    public int SuperBlockCount => (GroupCount + GroupsPerSuperBlock - 1) / GroupsPerSuperBlock;

    /// <summary>Whether the scales (and offsets) are stored as a float per super-block times an int8 per group.</summary>
    public bool HasSuperBlockScales => _subScales is not null;

    /// <summary>Whether the groups have offsets (<c>− Offset(r, g)</c>); false: <c>W = Scale · Code</c>.</summary>
    public bool HasOffsets => _hasOffsets;

    /// <summary>Codes per stored row: <c>32 · ceil(Cols / 32)</c>.</summary>
    public int RowStride => StrideFor(Cols);

    /// <summary>
    /// Codes (Rows, RowStride), zero-padded past Cols. Once a SIMD kernel (x86 or AdvSimd) has prepared the matrix it keeps only its
    /// interleaved copy, and this row-major view is rebuilt (allocated) on every call: read it once.
    /// </summary>
    public ReadOnlySpan<sbyte> Codes => CodeArray;

    /// <summary>
    /// The float scales: per group (Rows, GroupCount), or with <see cref="HasSuperBlockScales"/> the super-block scales
    /// (Rows, SuperBlockCount) that <see cref="SubScales"/> multiply.
    /// </summary>
    public ReadOnlySpan<float> Scales => ScaleArray;

    /// <summary>The int8 sub-scales (Rows, GroupCount) of super-block scales; empty for per-group scales.</summary>
    public ReadOnlySpan<sbyte> SubScales => _subScales;

    /// <summary>The float offsets, shaped as <see cref="Scales"/>; empty without offsets.</summary>
    public ReadOnlySpan<float> Offsets => OffsetArray;

    /// <summary>The int8 sub-offsets, shaped as <see cref="SubScales"/>; empty without offsets or super-blocks.</summary>
    public ReadOnlySpan<sbyte> SubOffsets => _subOffsets;

    /// <summary>Padded codes plus the stored scales and offsets (4 bytes per float, 1 per sub-scale).</summary>
    public long ByteCount => (long)Rows * RowStride + (long)_factorCount * (_hasOffsets ? 2 : 1) * sizeof(float)
        + (_subScales?.Length ?? 0) + (_subOffsets?.Length ?? 0);

    /// <summary>
    /// Copies codes (Rows, Cols) with a float scale per group, (Rows, ceil(Cols / groupSize)), and optionally a float
    /// offset per group of the same shape (empty: none).
    /// </summary>
    /// <param name="codes">Codes (rows, cols), row-major, −128..127.</param>
    /// <param name="scales">Scales (rows, ceil(cols / groupSize)).</param>
    /// <param name="offsets">Offsets shaped as <paramref name="scales"/>, or empty; they need groupSize 32.</param>
    /// <param name="rows">Rows, ≥ 1.</param>
    /// <param name="cols">Columns, ≥ 1.</param>
    /// <param name="groupSize">16 or 32.</param>
    public static GroupedInt8Matrix FromGroupScales(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<float> offsets,
        int rows, int cols, int groupSize)
    {
        ValidateShape(codes.Length, rows, cols, groupSize, offsets.IsEmpty);
        int groups = (cols + groupSize - 1) / groupSize;
        RequireLength(scales.Length, (long)rows * groups, "scales", $"{rows} rows x {groups} groups of {groupSize}");
        if (!offsets.IsEmpty) RequireLength(offsets.Length, (long)rows * groups, "offsets", $"{rows} rows x {groups} groups of {groupSize}, or none");
        return new GroupedInt8Matrix(rows, cols, groupSize, 1, PadRows(codes, rows, cols), scales.ToArray(), null,
            offsets.IsEmpty ? null : offsets.ToArray(), null);
    }

    /// <summary>
    /// Copies codes (Rows, Cols) with super-block scales: <c>Scale(r, g) = superScales[r, g / S] · subScales[r, g]</c>
    /// (one float rounding), S = <paramref name="groupsPerSuperBlock"/>; offsets the same way from
    /// <paramref name="superOffsets"/> and <paramref name="subOffsets"/> (both empty: none).
    /// </summary>
    /// <param name="codes">Codes (rows, cols), row-major, −128..127.</param>
    /// <param name="superScales">Super-block scales (rows, ceil(groups / S)).</param>
    /// <param name="subScales">Sub-scales (rows, groups), groups = ceil(cols / groupSize).</param>
    /// <param name="superOffsets">Super-block offsets shaped as <paramref name="superScales"/>, or empty.</param>
    /// <param name="subOffsets">Sub-offsets shaped as <paramref name="subScales"/>, or empty (with <paramref name="superOffsets"/>).</param>
    /// <param name="rows">Rows, ≥ 1.</param>
    /// <param name="cols">Columns, ≥ 1.</param>
    /// <param name="groupSize">16 or 32; 32 when there are offsets.</param>
    /// <param name="groupsPerSuperBlock">Groups per super-block: a power of two, ≥ 1.</param>
    public static GroupedInt8Matrix FromSuperBlockScales(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> superScales, ReadOnlySpan<sbyte> subScales,
        ReadOnlySpan<float> superOffsets, ReadOnlySpan<sbyte> subOffsets, int rows, int cols, int groupSize, int groupsPerSuperBlock)
    {
        ValidateShape(codes.Length, rows, cols, groupSize, superOffsets.IsEmpty);
        if (groupsPerSuperBlock < 1 || !BitOperations.IsPow2(groupsPerSuperBlock))
            throw new ArgumentOutOfRangeException(nameof(groupsPerSuperBlock), $"Expected a power of two ≥ 1 groups per super-block, found {groupsPerSuperBlock}.");
        int groups = (cols + groupSize - 1) / groupSize, supers = (groups + groupsPerSuperBlock - 1) / groupsPerSuperBlock;
        string superShape = $"{rows} rows x {supers} super-blocks of {groupsPerSuperBlock} groups", groupShape = $"{rows} rows x {groups} groups of {groupSize}";
        RequireLength(superScales.Length, (long)rows * supers, "superScales", superShape);
        RequireLength(subScales.Length, (long)rows * groups, "subScales", groupShape);
        if (superOffsets.IsEmpty != subOffsets.IsEmpty)
            throw new ArgumentException($"Expected super-block offsets and sub-offsets together or neither, found {superOffsets.Length} and {subOffsets.Length}.", nameof(subOffsets));
        if (!superOffsets.IsEmpty)
        {
            RequireLength(superOffsets.Length, (long)rows * supers, "superOffsets", superShape);
            RequireLength(subOffsets.Length, (long)rows * groups, "subOffsets", groupShape);
        }
        return new GroupedInt8Matrix(rows, cols, groupSize, groupsPerSuperBlock, PadRows(codes, rows, cols), superScales.ToArray(), subScales.ToArray(),
            superOffsets.IsEmpty ? null : superOffsets.ToArray(), subOffsets.IsEmpty ? null : subOffsets.ToArray());
    }

    /// <summary>The code (−128..127) of element (r, c).</summary>
    public int Code(int r, int c)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)r, (uint)Rows, nameof(r));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)c, (uint)Cols, nameof(c));
        sbyte[]? codes = Volatile.Read(ref _codes);
        return codes is null ? RowBlocks!.Code(r, c) : codes[(long)r * RowStride + c];
    }

    /// <summary>The float scale of group g in row r (for super-block scales, <c>super · sub</c> rounded once).</summary>
    public float Scale(int r, int g) => Factor(ScaleArray, _subScales, r, g);

    /// <summary>The float offset of group g in row r; 0 without offsets.</summary>
    public float Offset(int r, int g) => _hasOffsets ? Factor(OffsetArray!, _subOffsets, r, g) : 0f;

    /// <summary>The weight <c>Scale(r, g) · Code(r, c) − Offset(r, g)</c> (without offsets <c>Scale(r, g) · Code(r, c)</c>), g = c / GroupSize.</summary>
    public float Dequantize(int r, int c)
    {
        int g = c / GroupSize;
        float scaled = Scale(r, g) * Code(r, c);
        return _hasOffsets ? scaled - Offset(r, g) : scaled;
    }

    internal sbyte[] CodeArray => Volatile.Read(ref _codes) ?? RowBlocks!.ToRowMajor(RowStride);

    internal float[] ScaleArray => Volatile.Read(ref _scales) ?? Rebuilt(ref _scales, offsets: false);

    internal sbyte[]? SubScaleArray => _subScales;

    internal float[]? OffsetArray => !_hasOffsets ? null : Volatile.Read(ref _offsets) ?? Rebuilt(ref _offsets, offsets: true);

    // the row-major scales (or offsets) from the row blocks' exact copy, once dropped; built once, kept (one copy wins)
    private float[] Rebuilt(ref float[]? field, bool offsets)
    {
        float[] values = RowBlocks!.RowMajorFactors(offsets);
        return Interlocked.CompareExchange(ref field, values, null) ?? values;
    }

    internal sbyte[]? SubOffsetArray => _subOffsets;

    /// <summary>log2 of <see cref="GroupsPerSuperBlock"/>: a group's super-block is <c>g &gt;&gt; SuperBlockShift</c>.</summary>
    internal int SuperBlockShift => BitOperations.Log2((uint)GroupsPerSuperBlock);

    /// <summary>The interleaved copy the x86 and AdvSimd kernels stream; null until one of them prepares the matrix (<see cref="RepackToRowBlocks"/>).</summary>
    internal GroupedInt8RowBlocks? RowBlocks => Volatile.Read(ref _rowBlocks);

    /// <summary>
    /// Repacks the matrix into <see cref="GroupedInt8RowBlocks"/> once (thread-safe: one copy wins) and drops the
    /// row-major codes, so the codes are held once; the row-major view is rebuilt from the blocks only if something asks
    /// (serialization, the scalar kernel). Called by the x86 and AdvSimd kernels when a model is built or on their first call.
    /// </summary>
    /// <param name="halfScales">Whether the copy may hold its scales as halves (<see cref="GroupScaleEncoding.Half"/>); the AdvSimd kernel asks for floats.</param>
    internal GroupedInt8RowBlocks RepackToRowBlocks(bool halfScales = true)
    {
        if (RowBlocks is { } built) return built;
        if (Volatile.Read(ref _codes) is not { } codes) return RowBlocks!; // dropped: another thread published the blocks first
        var blocks = new GroupedInt8RowBlocks(this, codes, halfScales);
        GroupedInt8RowBlocks winner = Interlocked.CompareExchange(ref _rowBlocks, blocks, null) ?? blocks;
        // published before the row-major codes, scales and offsets go (the blocks hold them exactly): a reader that finds
        // them dropped finds the row blocks
        Volatile.Write(ref _codes, null);
        Volatile.Write(ref _scales, null);
        Volatile.Write(ref _offsets, null);
        return winner;
    }

    // factor[r, g] per group, or super[r, g >> shift] · sub[r, g] (one rounding)
    private float Factor(float[] values, sbyte[]? sub, int r, int g)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)r, (uint)Rows, nameof(r));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)g, (uint)GroupCount, nameof(g));
        return sub is null ? values[(long)r * GroupCount + g] : values[(long)r * SuperBlockCount + (g >> SuperBlockShift)] * sub[(long)r * GroupCount + g];
    }

    private static int StrideFor(int cols) => (cols + BlockColumns - 1) / BlockColumns * BlockColumns;

    // codes (rows, cols) → (rows, stride) with zero padding
    private static sbyte[] PadRows(ReadOnlySpan<sbyte> codes, int rows, int cols)
    {
        int stride = StrideFor(cols);
        var padded = new sbyte[(long)rows * stride];
        for (int r = 0; r < rows; r++) codes.Slice(r * cols, cols).CopyTo(padded.AsSpan(r * stride, cols));
        return padded;
    }

    private static void ValidateShape(long codeCount, int rows, int cols, int groupSize, bool noOffsets)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (groupSize is not (16 or 32))
            throw new ArgumentOutOfRangeException(nameof(groupSize), $"Expected a group size of 16 or 32, found {groupSize}.");
        if (!noOffsets && groupSize != 32)
            throw new ArgumentException($"Expected groups of 32 columns for offsets (the activation sums are per 32 columns), found groups of {groupSize}.", nameof(groupSize));
        if ((long)rows * StrideFor(cols) > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Expected at most {Array.MaxLength} padded codes, found a {rows}x{cols} matrix.");
        if (codeCount != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} codes for a {rows}x{cols} matrix, found {codeCount}.", "codes");
    }

    private static void RequireLength(int found, long expected, string name, string shape)
    {
        if (found != expected) throw new ArgumentException($"Expected {expected} {name} ({shape}), found {found}.", name);
    }
}
