using System.Numerics.Tensors;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Core.Runtime;

/// <summary>Where a non-finite weight was found.</summary>
/// <param name="Tensor">Which tensor, e.g. <c>layer 3 up</c>.</param>
/// <param name="Index">Element index inside that tensor (row-major).</param>
/// <param name="Value">The value (NaN or ±infinity).</param>
public sealed record NonFiniteWeight(string Tensor, long Index, float Value);

/// <summary>
/// Finds NaN and infinity in loaded weights, so a corrupted or badly converted file is refused at load rather than
/// silently producing garbage tokens. One vectorized pass per tensor: <c>max|x|</c> is finite iff every element is
/// (TensorPrimitives.MaxMagnitude propagates NaN); only a tensor that fails is scanned for the position.
/// </summary>
public static class WeightsHealthCheck
{
    /// <summary>The first non-finite element of <paramref name="weights"/> (FP32 embeddings, norms, biases and FP32 matrices; a stored embedding table had its block scales checked when it was read), or null when all are finite.</summary>
    public static NonFiniteWeight? FindFirstNonFinite(TransformerWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        NonFiniteWeight? found = Check("token embedding", weights.TokenEmbedding)
            ?? Check("position embedding", weights.PositionEmbedding)
            ?? Check("embedding norm", weights.EmbeddingNorm)
            ?? Check("project_in", weights.ProjectIn);
        for (int i = 0; i < weights.Layers.Count && found is null; i++)
        {
            LayerWeights l = weights.Layers[i];
            foreach (LayerTensor role in LayerTensors.All)
                found ??= role.IsNorm() ? Check($"layer {i} {role.Describe()}", l.Norm(role)) : Check($"layer {i} {role.Describe()}", l.Linear(role));
        }
        return found ?? Check("final norm", weights.FinalNorm) ?? Check("project_out", weights.ProjectOut) ?? Check("LM head", weights.LmHead);
    }

    /// <summary>The first non-finite element of <paramref name="values"/> named <paramref name="tensor"/>, or null.</summary>
    public static NonFiniteWeight? Check(string tensor, ReadOnlySpan<float> values)
    {
        if (values.IsEmpty || float.IsFinite(TensorPrimitives.MaxMagnitude(values))) return null;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return new NonFiniteWeight(tensor, i, values[i]);
        return null;
    }

    private static NonFiniteWeight? Check(string tensor, float[]? values) => values is null ? null : Check(tensor, values.AsSpan());

    private static NonFiniteWeight? Check(string tensor, NormLayer? norm) =>
        norm is null ? null : Check(tensor + " weight", norm.Weight) ?? Check(tensor + " bias", norm.Bias);

    private static NonFiniteWeight? Check(string tensor, LinearLayer? linear) =>
        linear is null ? null
            : (linear.Weight is Fp32Matrix matrix ? Check(tensor + " weight", matrix.Data) : null) ?? Check(tensor + " bias", linear.Bias);
}
