namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// How <see cref="PagedKvStorage{TKeys, TValues}"/> stores keys: in groups of <see cref="GroupSlots"/> consecutive slots of
/// one key/value head (1: each token's row on its own, <see cref="RowKeys{TRows}"/>; more: per-channel scales over the
/// group's tokens, <see cref="Q8ChannelKeys"/>, <see cref="Q4ChannelKeys"/>). A group is written once its last slot is
/// known; until then its keys wait as fp16 rows (the partial group), which attention scores with the FP32 query.
/// Scoring a stored group has a SIMD version and a scalar twin with the same signature.
/// </summary>
internal unsafe interface IKeyFormat
{
    /// <summary>Slots stored together.</summary>
    static abstract int GroupSlots { get; }

    /// <summary>Bytes of one stored group of <see cref="GroupSlots"/> keys of <paramref name="headDim"/> values.</summary>
    static abstract int GroupBytes(int headDim);

    /// <summary>Bytes of a query prepared once for every key (<see cref="PrepareQuery"/>).</summary>
    static abstract int QueryBytes(int headDim);

    /// <summary>Bytes of the scratch one query needs per group (<see cref="ScoreGroup"/>), 0 for none.</summary>
    static abstract int GroupQueryBytes(int headDim);

    /// <summary>Prepares query <paramref name="q"/> (headDim), scaled by <paramref name="scale"/>.</summary>
    static abstract void PrepareQuery(float* q, float scale, byte* prepared, int headDim);

    /// <summary>Stores <paramref name="rows"/> (GroupSlots, headDim), the group's keys in slot order.</summary>
    static abstract void EncodeGroup(float* rows, byte* group, int headDim);

    /// <summary>Writes the keys a stored group stands for into <paramref name="rows"/> (GroupSlots, headDim).</summary>
    static abstract void DecodeGroup(byte* group, float* rows, int headDim);

    /// <summary>
    /// s[c · sStride + t] = scale · q_c · k(first + t) for t &lt; <paramref name="slots"/> and the <paramref name="count"/>
    /// prepared queries at <paramref name="queries"/> (<see cref="QueryBytes"/> apart), k the keys of the stored group at
    /// <paramref name="group"/>, and with <see cref="GroupSlots"/> = 1 of the groups that follow it (<see cref="GroupBytes"/>
    /// apart: a run of rows); <paramref name="groupQueries"/>: count × <see cref="GroupQueryBytes"/> of scratch.
    /// </summary>
    static abstract void ScoreGroup(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim);

    /// <summary>Scalar twin of <see cref="ScoreGroup"/>.</summary>
    static abstract void ScoreGroupScalar(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim);
}

/// <summary>Keys stored one token at a time in a row format (<see cref="F16Rows"/>, or the per-token quantized rows measured against per-channel keys).</summary>
internal unsafe struct RowKeys<TRows> : IKeyFormat where TRows : IKvRows
{
    public static int GroupSlots => 1;

    public static int GroupBytes(int headDim) => TRows.RowBytes(headDim);

    public static int QueryBytes(int headDim) => TRows.QueryBytes(headDim);

    public static int GroupQueryBytes(int headDim) => 0;

    public static void PrepareQuery(float* q, float scale, byte* prepared, int headDim) => TRows.PrepareQuery(q, scale, prepared, headDim);

    public static void EncodeGroup(float* rows, byte* group, int headDim) => TRows.Encode(rows, group, headDim);

    public static void DecodeGroup(byte* group, float* rows, int headDim) => TRows.Decode(group, rows, headDim);

    // one group per slot: a run of slots is a run of rows
    public static void ScoreGroup(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim) =>
        TRows.ScoreRows(group + first * TRows.RowBytes(headDim), TRows.RowBytes(headDim), slots, queries, count, s, sStride, headDim);

    public static void ScoreGroupScalar(byte* group, int first, int slots, byte* queries, byte* groupQueries, int count, float* s, int sStride, int headDim)
    {
        int rowBytes = TRows.RowBytes(headDim);
        for (int t = 0; t < slots; t++) TRows.ScoresScalar(group + (first + t) * rowBytes, queries, count, s + t, sStride, headDim);
    }
}
