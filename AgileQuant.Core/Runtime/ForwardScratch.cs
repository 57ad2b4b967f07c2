namespace AgileQuant.Core.Runtime;

/// <summary>
/// The activations of one forward pass: grow-only buffers sized for the largest chunk seen, one row per token of the
/// chunk (rows = n, fewer after token pruning). One per inference context.
/// </summary>
internal sealed class ForwardScratch(TransformerConfig config)
{
    public float[] Hidden = [];         // (n, HiddenSize) residual stream x
    public float[] Normed = [];         // (n, max(HiddenSize, EmbeddingWidth)) norm(x); the embeddings before project_in
    public float[] Query = [];          // (n, NumHeads·HeadDim)
    public float[] Key = [];            // (n, KvDim)
    public float[] Value = [];          // (n, KvDim)
    public float[] Attention = [];      // (n, NumHeads·HeadDim) attention output, heads side by side
    public float[] Projected = [];      // (n, max(HiddenSize, EmbeddingWidth)) a block's output before the residual add; project_out's
    public float[] Inner = [];          // (n, IntermediateSize) MLP hidden: up(x), then act(…)
    public float[] Gate = [];           // (n, IntermediateSize) gated MLP's gate(x)
    public float[] StartAttention = []; // (NumHeads, n): A[h, i, 0], each query's attention to the start token
    public float[] TokenScores = [];    // (n): s_i = Σ_h A[h, i, 0]
    public int[] Position = [];         // (n): model position of each row in the current layer
    public bool[] Masked = [];          // (n): row is padding

    /// <summary>Grows every buffer to hold <paramref name="n"/> rows.</summary>
    public void EnsureRows(int n)
    {
        TransformerConfig c = config;
        int d = c.HiddenSize, q = c.NumHeads * c.HeadDim, kv = c.KvDim, f = c.IntermediateSize;
        int wide = Math.Max(d, c.EmbeddingWidth);
        Grow(ref Hidden, n * d);
        Grow(ref Normed, n * wide);
        Grow(ref Query, n * q);
        Grow(ref Key, n * kv);
        Grow(ref Value, n * kv);
        Grow(ref Attention, n * q);
        Grow(ref Projected, n * wide);
        Grow(ref Inner, n * f);
        if (c.Mlp.IsGated()) Grow(ref Gate, n * f);
        Grow(ref StartAttention, c.NumHeads * n);
        Grow(ref TokenScores, n);
        if (Position.Length < n)
        {
            Position = new int[n];
            Masked = new bool[n];
        }
    }

    /// <summary>
    /// Compacts the residual stream, the attention outputs and the per-row positions and padding flags to rows
    /// <paramref name="kept"/> (ascending); returns their count.
    /// </summary>
    public int KeepRows(ReadOnlySpan<int> kept)
    {
        int d = config.HiddenSize, q = config.NumHeads * config.HeadDim;
        // rows move only towards the front (kept[k] ≥ k), so copying in ascending order never overwrites a row still needed
        for (int k = 0; k < kept.Length; k++)
        {
            int row = kept[k];
            if (row == k) continue;
            Hidden.AsSpan(row * d, d).CopyTo(Hidden.AsSpan(k * d, d));
            Attention.AsSpan(row * q, q).CopyTo(Attention.AsSpan(k * q, q));
            Position[k] = Position[row];
            Masked[k] = Masked[row];
        }
        return kept.Length;
    }

    private static void Grow(ref float[] buffer, long length)
    {
        if (buffer.LongLength < length) buffer = new float[length];
    }
}
