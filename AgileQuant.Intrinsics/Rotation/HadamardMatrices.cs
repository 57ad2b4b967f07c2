using System.Collections.Concurrent;

namespace AgileQuant.Intrinsics.Rotation;

/// <summary>
/// Known ±1 Hadamard matrices H_m (H·Hᵀ = m·I) of the orders that are not powers of two and that
/// <see cref="HadamardTransform"/> multiplies by, as QuaRot does for widths m·2^k (arXiv 2404.00456, §4: 11008 = 172·64):
/// Paley's first construction for m = q + 1 (q prime, q ≡ 3 mod 4), Paley's second for m = 2(q + 1) (q prime, q ≡ 1 mod 4),
/// and Williamson's array of four symmetric circulant blocks for 52, 156 and 172. Sizes 40, 24, … are 20·2, 12·2, … and
/// need no table of their own. Each order's matrix is built once, on first use.
/// </summary>
internal static class HadamardMatrices
{
    /// <summary>The orders m &gt; 1 with a matrix here, ascending (each is 4 times an odd number, so at most one divides a width m·2^k).</summary>
    public static IReadOnlyList<int> Orders { get; } = [12, 20, 28, 36, 44, 52, 60, 108, 140, 156, 172];

    private static readonly ConcurrentDictionary<int, sbyte[]> Built = new();

    /// <summary>
    /// The split of <paramref name="n"/> into m·K with m = 1 or one of <see cref="Orders"/> and K a power of two, or
    /// (0, 0) when there is none.
    /// </summary>
    public static (int Order, int PowerOfTwo) Split(int n)
    {
        if (n <= 0) return (0, 0);
        if ((n & (n - 1)) == 0) return (1, n);
        foreach (int m in Orders)
        {
            if (n % m != 0) continue;
            int k = n / m;
            if ((k & (k - 1)) == 0) return (m, k);
        }
        return (0, 0);
    }

    /// <summary>H_m (m, m) row-major, entries ±1; <paramref name="order"/> must be one of <see cref="Orders"/>.</summary>
    public static ReadOnlySpan<sbyte> Get(int order) => Built.GetOrAdd(order, Build);

    private static readonly ConcurrentDictionary<int, float[]> Columns = new();

    /// <summary>H_mᵀ (m, m) row-major as floats: row b is column b of H_m (the vectorized transform's axpy operands).</summary>
    public static ReadOnlySpan<float> TransposedAsFloats(int order) => Columns.GetOrAdd(order, m =>
    {
        ReadOnlySpan<sbyte> h = Get(m);
        var t = new float[m * m]; // (m, m)
        for (int a = 0; a < m; a++)
            for (int b = 0; b < m; b++) t[b * m + a] = h[a * m + b];
        return t;
    });

    private static sbyte[] Build(int order) => order switch
    {
        12 => PaleyFirst(11),
        20 => PaleyFirst(19),
        28 => PaleySecond(13),
        36 => PaleySecond(17),
        44 => PaleyFirst(43),
        52 => Williamson(WilliamsonBlocks13),
        60 => PaleyFirst(59),
        108 => PaleyFirst(107),
        140 => PaleyFirst(139),
        156 => Williamson(WilliamsonBlocks39),
        172 => Williamson(WilliamsonBlocks43),
        _ => throw new ArgumentOutOfRangeException(nameof(order), order, $"No Hadamard matrix of order {order} is known here; orders: {string.Join(", ", Orders)}."),
    };

    /// <summary>χ(a) for a in GF(q): 0 for a = 0, +1 for a nonzero square, −1 otherwise (the quadratic character).</summary>
    private static sbyte[] QuadraticCharacter(int q)
    {
        var chi = new sbyte[q];
        Array.Fill(chi, (sbyte)-1);
        chi[0] = 0;
        for (int a = 1; a < q; a++) chi[a * a % q] = 1;
        return chi;
    }

    /// <summary>
    /// Paley I, order q + 1 (q prime, q ≡ 3 mod 4): H = I + S with S = [[0, 1ᵀ], [−1, Q]], Q[i, j] = χ(j − i). Q is skew
    /// and Q·Qᵀ = q·I − J, so S is skew with S·Sᵀ = q·I and H·Hᵀ = I + S + Sᵀ + S·Sᵀ = (q + 1)·I.
    /// </summary>
    private static sbyte[] PaleyFirst(int q)
    {
        sbyte[] chi = QuadraticCharacter(q);
        int n = q + 1;
        var h = new sbyte[n * n]; // (n, n)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                h[i * n + j] = i == j ? (sbyte)1
                    : i == 0 ? (sbyte)1
                    : j == 0 ? (sbyte)-1
                    : chi[((j - i) % q + q) % q];
        return h;
    }

    /// <summary>
    /// Paley II, order 2(q + 1) (q prime, q ≡ 1 mod 4): with the symmetric conference matrix C = [[0, 1ᵀ], [1, Q]]
    /// (C·Cᵀ = q·I), H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]; the cross terms cancel because C is symmetric.
    /// </summary>
    private static sbyte[] PaleySecond(int q)
    {
        sbyte[] chi = QuadraticCharacter(q);
        int c = q + 1, n = 2 * c;
        var h = new sbyte[n * n]; // (n, n)
        for (int i = 0; i < c; i++)
            for (int j = 0; j < c; j++)
            {
                int conference = i == j ? 0 : i == 0 || j == 0 ? 1 : chi[((j - i) % q + q) % q];
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                    {
                        int value = conference == 0
                            ? (a == 0 && b == 0 ? 1 : -1)              // [[1, −1], [−1, −1]]
                            : conference * (a == 1 && b == 1 ? -1 : 1); // ±[[1, 1], [1, −1]]
                        h[(2 * i + a) * n + 2 * j + b] = (sbyte)value;
                    }
            }
        return h;
    }

    // First rows of four symmetric circulant ±1 matrices A, B, C, D of order t with A² + B² + C² + D² = 4t·I
    // (Williamson matrices). Order 13 and 43: Baumert and Hall's solutions as tabulated in M. Hall, Combinatorial
    // Theory (2nd ed., 1986); order 39: from the tables of Williamson-type matrices collected by Longyear (2013).
    private static readonly string[] WilliamsonBlocks13 = ["++++-+--+-+++", "+---+-++-+---", "++---+--+---+", "++---+--+---+"];

    private static readonly string[] WilliamsonBlocks39 =
    [
        "+++--+-+-----+--++----++--+-----+-+--++", "+++--++-+---+-+--+----+--+-+---+-++--++",
        "++++---+--++----+-+--+-+----++--+---+++", "+---++-+-+-----+++-++-+++-----+-+-++---",
    ];

    private static readonly string[] WilliamsonBlocks43 =
    [
        "++---++++-+--+--++--------++--+--+-++++---+", "+++-+-++--+-+-++++-+----+-++++-+-+--++-+-++",
        "++-++++++----+-+--++-++-++--+-+----++++++-+", "+---++--++++-+-+++-++--++-+++-+-++++--++---",
    ];

    /// <summary>
    /// Williamson's array, order 4t: [[A, B, C, D], [−B, A, −D, C], [−C, D, A, −B], [−D, −C, B, A]] with the circulant
    /// blocks X[i, j] = x[(j − i) mod t] of <paramref name="firstRows"/>.
    /// </summary>
    private static sbyte[] Williamson(string[] firstRows)
    {
        int t = firstRows[0].Length, n = 4 * t;
        // (block row, block column) → (which of A..D, sign)
        ReadOnlySpan<int> block = [0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0];
        ReadOnlySpan<int> sign = [1, 1, 1, 1, -1, 1, -1, 1, -1, 1, 1, -1, -1, -1, 1, 1];
        var h = new sbyte[n * n]; // (n, n)
        for (int bi = 0; bi < 4; bi++)
            for (int bj = 0; bj < 4; bj++)
            {
                string row = firstRows[block[bi * 4 + bj]];
                int s = sign[bi * 4 + bj];
                for (int i = 0; i < t; i++)
                    for (int j = 0; j < t; j++)
                        h[(bi * t + i) * n + bj * t + j] = (sbyte)(s * (row[((j - i) % t + t) % t] == '+' ? 1 : -1));
            }
        return h;
    }
}
