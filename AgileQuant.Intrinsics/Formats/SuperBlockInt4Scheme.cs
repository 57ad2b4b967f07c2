namespace AgileQuant.Intrinsics.Formats;

/// <summary>
/// How the codes and scales of a <see cref="SuperBlockInt4Matrix"/> are read: sub-blocks of <see cref="SubBlockSize"/>
/// columns with an integer scale (and, with <see cref="HasMins"/>, an integer minimum) each, inside super-blocks of
/// <see cref="SuperBlockSize"/> columns with a half-precision scale (and minimum) each, and what a 4-bit code means:
/// <c>v(q) = q − CodeOffset</c>, or <c>v(q) = Codebook[q]</c> for a non-linear codebook. These are the k-quants
/// (Q2_K, Q3_K, Q4_K), Q4_1 and the 4-bit i-quants (IQ4_NL, IQ4_XS) of ggml, among others (docs/kernels.md).
/// </summary>
public sealed class SuperBlockInt4Scheme
{
    /// <summary>Most columns per super-block: the kernels' int32 super-block sums stay exact up to here.</summary>
    public const int MaxSuperBlockSize = 256;

    private readonly sbyte[]? _codebook;

    /// <summary>Creates a scheme; throws when the sizes, offset, codebook or minimums do not fit together.</summary>
    /// <param name="subBlockSize">Columns per sub-block (integer scale): 16 or 32.</param>
    /// <param name="superBlockSize">Columns per super-block (half scale): a multiple of 32 and of the sub-block size, at most 256.</param>
    /// <param name="codeOffset">Subtracted from each code (0..15), when there is no codebook and no minimums.</param>
    /// <param name="codebook">16 values in −127..127 indexed by code, or empty for <c>v(q) = q − codeOffset</c>.</param>
    /// <param name="hasMins">Whether each sub-block has an integer minimum and each super-block a half minimum.</param>
    public SuperBlockInt4Scheme(int subBlockSize, int superBlockSize, int codeOffset = 0, ReadOnlySpan<sbyte> codebook = default, bool hasMins = false)
    {
        if (subBlockSize is not (16 or 32))
            throw new ArgumentOutOfRangeException(nameof(subBlockSize), $"Expected a sub-block size of 16 or 32 columns, found {subBlockSize}.");
        if (superBlockSize <= 0 || superBlockSize > MaxSuperBlockSize || superBlockSize % 32 != 0 || superBlockSize % subBlockSize != 0)
            throw new ArgumentOutOfRangeException(nameof(superBlockSize), $"Expected a super-block size that is a multiple of 32 and of the sub-block size {subBlockSize}, at most {MaxSuperBlockSize}, found {superBlockSize}.");
        if (codeOffset is < 0 or > 15)
            throw new ArgumentOutOfRangeException(nameof(codeOffset), $"Expected a code offset in 0..15, found {codeOffset}.");
        if (!codebook.IsEmpty)
        {
            if (codebook.Length != 16)
                throw new ArgumentException($"Expected a codebook of 16 values (one per 4-bit code), found {codebook.Length}.", nameof(codebook));
            foreach (sbyte value in codebook)
                if (value == sbyte.MinValue) throw new ArgumentOutOfRangeException(nameof(codebook), "Expected codebook values in -127..127, found -128.");
            if (codeOffset != 0) throw new ArgumentException("A codebook scheme takes no code offset: the codebook holds the values.", nameof(codeOffset));
            _codebook = codebook.ToArray();
        }
        if (hasMins && codeOffset != 0)
            throw new ArgumentException("Expected either a code offset or minimums, found both.", nameof(hasMins));
        SubBlockSize = subBlockSize;
        SuperBlockSize = superBlockSize;
        CodeOffset = codeOffset;
        HasMins = hasMins;
    }

    /// <summary>Columns per sub-block: 16 or 32.</summary>
    public int SubBlockSize { get; }

    /// <summary>Columns per super-block.</summary>
    public int SuperBlockSize { get; }

    /// <summary>Sub-blocks per super-block.</summary>
    public int SubBlocksPerSuperBlock => SuperBlockSize / SubBlockSize;

    /// <summary>Subtracted from each code when there is no codebook (e.g. 4 for Q3_K's codes 0..7 = values −4..3).</summary>
    public int CodeOffset { get; }

    /// <summary>The 16 values codes stand for, or empty when <c>v(q) = q − CodeOffset</c>.</summary>
    public ReadOnlySpan<sbyte> Codebook => _codebook;

    /// <summary>Whether codes index <see cref="Codebook"/>.</summary>
    public bool HasCodebook => _codebook is not null;

    /// <summary>Whether sub-blocks carry integer minimums and super-blocks half minimums.</summary>
    public bool HasMins { get; }

    /// <summary>
    /// Whether the kernels subtract a per-sub-block integer term <c>c · Σx</c> scaled per super-block: the minimums, or
    /// <c>CodeOffset · scale</c> (the kernels multiply the unsigned code, not <c>q − CodeOffset</c>).
    /// </summary>
    public bool HasCorrection => HasMins || CodeOffset != 0;

    /// <summary>The value code <paramref name="q"/> (0..15) stands for: <c>Codebook[q]</c> or <c>q − CodeOffset</c>.</summary>
    public int Value(int q) => _codebook is not null ? _codebook[q] : q - CodeOffset;

    /// <summary>The signed value the kernels multiply for code <paramref name="q"/>: <c>Codebook[q]</c>, or q itself.</summary>
    internal int KernelValue(int q) => _codebook is not null ? _codebook[q] : q;

    internal sbyte[]? CodebookArray => _codebook;
}
