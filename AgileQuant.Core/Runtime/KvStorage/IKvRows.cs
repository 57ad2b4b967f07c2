namespace AgileQuant.Core.Runtime.KvStorage;

/// <summary>
/// A stored format of one head vector in a <see cref="PagedKvStorage{TKeys, TValues}"/> (<see cref="F16Rows"/>, <see cref="Q8Rows"/>,
/// <see cref="Q4Rows{TRotation}"/>): how a key or value is written, how a query is prepared against stored keys, and the two products
/// <see cref="StreamingAttention{TKeys, TValues}"/> streams every cached row through. Each product has a SIMD version and a scalar
/// twin with the same signature (the specification); the tests and <c>agilequant selftest</c> compare them.
/// </summary>
internal unsafe interface IKvRows
{
    /// <summary>The <see cref="KvCacheType"/> this format stores.</summary>
    static abstract KvCacheType Type { get; }

    /// <summary>Bytes of one stored head vector of <paramref name="headDim"/> values.</summary>
    static abstract int RowBytes(int headDim);

    /// <summary>Bytes of one query prepared by <see cref="PrepareQuery"/>.</summary>
    static abstract int QueryBytes(int headDim);

    /// <summary>Floats of one output accumulator: the head's values and any per-block terms <see cref="Finish"/> folds in.</summary>
    static abstract int AccumulatorLength(int headDim);

    /// <summary>Writes the head vector <paramref name="x"/> (headDim) as one stored row.</summary>
    static abstract void Encode(float* x, byte* row, int headDim);

    /// <summary>Writes the values the row <paramref name="row"/> stands for into <paramref name="x"/> (headDim).</summary>
    static abstract void Decode(byte* row, float* x, int headDim);

    /// <summary>Prepares query <paramref name="q"/> (headDim), scaled by <paramref name="scale"/>, for <see cref="Scores"/>.</summary>
    static abstract void PrepareQuery(float* q, float scale, byte* prepared, int headDim);

    /// <summary>
    /// s[c · sStride] = scale · q_c · k for the <paramref name="count"/> prepared queries at <paramref name="queries"/> (each
    /// <see cref="QueryBytes"/> apart) against the stored key row <paramref name="key"/>.
    /// </summary>
    static abstract void Scores(byte* key, byte* queries, int count, float* s, int sStride, int headDim);

    /// <summary>Scalar twin of <see cref="Scores"/>.</summary>
    static abstract void ScoresScalar(byte* key, byte* queries, int count, float* s, int sStride, int headDim);

    /// <summary>
    /// acc_c += p[c · pStride] · v for the <paramref name="count"/> accumulators at <paramref name="acc"/> (each
    /// <see cref="AccumulatorLength"/> apart), v the stored value row <paramref name="value"/>; p = 0 leaves acc_c as it is.
    /// </summary>
    static abstract void AddValues(byte* value, float* p, int pStride, int count, float* acc, int headDim);

    /// <summary>Scalar twin of <see cref="AddValues"/>.</summary>
    static abstract void AddValuesScalar(byte* value, float* p, int pStride, int count, float* acc, int headDim);

    /// <summary>
    /// <see cref="Scores"/> of the <paramref name="rows"/> stored rows at <paramref name="keys"/> + t · <paramref name="rowBytes"/>
    /// into s[c · sStride + t], equal to it row by row bit for bit: one call for a run of slots.
    /// </summary>
    static abstract void ScoreRows(byte* keys, int rowBytes, int rows, byte* queries, int count, float* s, int sStride, int headDim);

    /// <summary>
    /// <see cref="AddValues"/> of the <paramref name="rows"/> stored rows at <paramref name="values"/> + t · <paramref name="rowBytes"/>
    /// with weights p[c · pStride + t], in row order, equal to it row by row bit for bit (and so to <see cref="AddValuesScalar"/>):
    /// one call for a run of slots.
    /// </summary>
    static abstract void AddValueRows(byte* values, int rowBytes, int rows, float* p, int pStride, int count, float* acc, int headDim);

    /// <summary>output (headDim) = the accumulated Σ p·v · <paramref name="inverse"/> (the softmax normalization), in the model's basis.</summary>
    static abstract void Finish(float* acc, float inverse, float* output, int headDim);
}
