namespace AgileQuant.Core.Pruning;

/// <summary>
/// Tracks the tokens of one prefill chunk through the layers: which original tokens still have rows, which of
/// them are lower-bit, and which rows a layer prunes (docs/method.md §3). Rows stay in original order. Not thread-safe.
/// </summary>
/// <remarks>
/// Score of row i: <c>s_i = Σ_h A[h, i, 0]</c>. Candidates are all rows but the start token (row 0 when the chunk
/// begins the sequence), the last row, and rows whose score is NaN: in a sliding-window layer, a row farther than the
/// window from the start token cannot attend to it, so it has no score there and is neither pruned nor marked lower-bit
/// by that layer (docs/architecture.md, "Token pruning with sliding-window layers"). A layer prunes the first <c>floor(r·n)</c> candidates in pruning order
/// (score ascending for <see cref="PruningDirection.Lowest"/>, descending for <see cref="PruningDirection.Highest"/>,
/// ties by index), then marks the lowest-scoring unpruned candidates lower-bit until <c>floor(b·n)</c> unpruned rows
/// are lower-bit (rows marked by earlier layers stay marked).
/// </remarks>
internal sealed class TokenPruner
{
    private int[] _original = [];  // (capacity): original chunk index of each current row
    private bool[] _lowBit = [];   // (capacity): row uses the lower-bit activation width
    private bool[] _pruned = [];   // (capacity): row is pruned by the current layer
    private int[] _kept = [];      // (capacity): rows kept by the last Compact
    private int _keptCount;
    private bool _firstIsStart;

    /// <summary>Number of current rows.</summary>
    public int Count { get; private set; }

    /// <summary>Number of current rows marked lower-bit.</summary>
    public int LowBitCount { get; private set; }

    /// <summary>Number of rows the current layer prunes (set by <see cref="Select"/>, cleared by <see cref="Compact"/>).</summary>
    public int PrunedCount { get; private set; }

    /// <summary>Original chunk index of each current row (Count).</summary>
    public ReadOnlySpan<int> OriginalIndices => _original.AsSpan(0, Count);

    /// <summary>Lower-bit flag of each current row (Count).</summary>
    public ReadOnlySpan<bool> LowBit => _lowBit.AsSpan(0, Count);

    /// <summary>Pruned flag of each current row (Count), set by <see cref="Select"/> until <see cref="Compact"/>.</summary>
    public ReadOnlySpan<bool> Pruned => _pruned.AsSpan(0, Count);

    /// <summary>Rows (indices before compaction) kept by the last <see cref="Compact"/>, ascending.</summary>
    public ReadOnlySpan<int> KeptRows => _kept.AsSpan(0, _keptCount);

    /// <summary>Starts a chunk of <paramref name="n"/> rows, none pruned or lower-bit; <paramref name="firstIsStart"/>: row 0 is the sequence's start token.</summary>
    public void Begin(int n, bool firstIsStart)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (_original.Length < n)
        {
            _original = new int[n];
            _lowBit = new bool[n];
            _pruned = new bool[n];
            _kept = new int[n];
        }
        for (int i = 0; i < n; i++) _original[i] = i;
        Array.Clear(_lowBit, 0, n);
        Array.Clear(_pruned, 0, n);
        Count = n;
        LowBitCount = 0;
        PrunedCount = 0;
        _keptCount = n;
        for (int i = 0; i < n; i++) _kept[i] = i;
        _firstIsStart = firstIsStart;
    }

    /// <summary>Unmarks every lower-bit row (per-layer re-selection without a schedule).</summary>
    public void ClearLowBit()
    {
        Array.Clear(_lowBit, 0, Count);
        LowBitCount = 0;
    }

    /// <summary>Token scores <c>s_i = Σ_h A[h, i, 0]</c> from <paramref name="startAttention"/> (heads, n), summed over h in order.</summary>
    public static void ComputeScores(ReadOnlySpan<float> startAttention, int heads, int n, Span<float> scores)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(heads);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (startAttention.Length < (long)heads * n) throw new ArgumentException($"Expected {heads}×{n} attention values, found {startAttention.Length}.", nameof(startAttention));
        if (scores.Length < n) throw new ArgumentException($"Expected room for {n} scores, found {scores.Length}.", nameof(scores));
        for (int i = 0; i < n; i++)
        {
            float s = 0;
            for (int h = 0; h < heads; h++) s += startAttention[h * n + i];
            scores[i] = s;
        }
    }

    /// <summary>
    /// The candidate rows (neither the start token, when <paramref name="firstIsStart"/>, nor the last row, nor a row whose
    /// score is NaN) ordered for pruning: by score ascending (<see cref="PruningDirection.Lowest"/>) or descending, ties by
    /// index ascending.
    /// </summary>
    public static int[] RankCandidates(ReadOnlySpan<float> scores, bool firstIsStart, PruningDirection direction)
    {
        int n = scores.Length;
        int first = firstIsStart ? 1 : 0;
        if (n - 1 <= first) return [];
        int count = 0;
        for (int r = first; r < n - 1; r++) if (!float.IsNaN(scores[r])) count++;
        int[] rows = new int[count];
        for (int r = first, k = 0; r < n - 1; r++) if (!float.IsNaN(scores[r])) rows[k++] = r;
        float[] keys = scores.Slice(first, n - 1 - first).ToArray();
        int sign = direction == PruningDirection.Lowest ? 1 : -1;
        Array.Sort(rows, (a, b) =>
        {
            int byScore = sign * keys[a - first].CompareTo(keys[b - first]);
            return byScore != 0 ? byScore : a.CompareTo(b);
        });
        return rows;
    }

    /// <summary>The rows a layer prunes: the first <c>floor(ratio·n)</c> of <see cref="RankCandidates"/>, ascending.</summary>
    public static int[] SelectPruned(ReadOnlySpan<float> scores, double ratio, bool firstIsStart, PruningDirection direction)
    {
        if (!(ratio >= 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), ratio, "The pruning ratio must be in [0, 1).");
        int[] ranked = RankCandidates(scores, firstIsStart, direction);
        int count = Math.Min(ranked.Length, (int)Math.Floor(ratio * scores.Length));
        int[] pruned = ranked[..count];
        Array.Sort(pruned);
        return pruned;
    }

    /// <summary>
    /// Marks the rows this layer prunes (ratio <paramref name="pruneRatio"/>) and tops up the lower-bit set to
    /// <c>floor(lowBitRatio·n)</c> unpruned rows with the lowest-scoring unpruned candidates; n = <see cref="Count"/>.
    /// </summary>
    /// <param name="scores">s_i for each current row (Count).</param>
    /// <param name="pruneRatio">r_l in [0, 1).</param>
    /// <param name="lowBitRatio">b_l in [0, 1).</param>
    /// <param name="direction">Which end of the ranking is pruned.</param>
    public void Select(ReadOnlySpan<float> scores, double pruneRatio, double lowBitRatio, PruningDirection direction)
    {
        int n = Count;
        if (scores.Length < n) throw new ArgumentException($"Expected {n} scores, found {scores.Length}.", nameof(scores));
        if (!(lowBitRatio >= 0 && lowBitRatio < 1)) throw new ArgumentOutOfRangeException(nameof(lowBitRatio), lowBitRatio, "The lower-bit ratio must be in [0, 1).");
        scores = scores[..n];
        Array.Clear(_pruned, 0, n);
        int[] pruned = SelectPruned(scores, pruneRatio, _firstIsStart, direction);
        foreach (int row in pruned) _pruned[row] = true;
        PrunedCount = pruned.Length;

        int target = (int)Math.Floor(lowBitRatio * n);
        int marked = 0;
        for (int i = 0; i < n; i++) if (_lowBit[i] && !_pruned[i]) marked++;
        if (marked < target)
            foreach (int row in RankCandidates(scores, _firstIsStart, PruningDirection.Lowest))
            {
                if (marked >= target) break;
                if (_pruned[row] || _lowBit[row]) continue;
                _lowBit[row] = true;
                marked++;
            }
        LowBitCount = 0;
        for (int i = 0; i < n; i++) if (_lowBit[i]) LowBitCount++;
    }

    /// <summary>Drops the rows <see cref="Select"/> pruned: remaps original indices and lower-bit flags; <see cref="KeptRows"/> lists the rows kept.</summary>
    public void Compact()
    {
        int kept = 0, lowBit = 0;
        for (int i = 0; i < Count; i++)
        {
            if (_pruned[i]) continue;
            _kept[kept] = i;
            _original[kept] = _original[i];
            _lowBit[kept] = _lowBit[i];
            if (_lowBit[kept]) lowBit++;
            kept++;
        }
        Array.Clear(_pruned, 0, Count);
        _keptCount = kept;
        Count = kept;
        LowBitCount = lowBit;
        PrunedCount = 0;
    }
}
