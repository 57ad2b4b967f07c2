using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>Hugging Face safetensors checkpoints written here from a family's names, independently of the readers.</summary>
internal static class HfTestCheckpoint
{
    /// <summary>
    /// Writes <paramref name="weights"/> to <paramref name="path"/> as a Hugging Face checkpoint would hold them under
    /// <paramref name="family"/>'s names after <paramref name="prefix"/>, norms as the family stores them (Gemma: w of 1 + w)
    /// (fused tensors joined here, independently of the reader's split); a tied head is stored as a copy when
    /// <paramref name="storeTiedHead"/> and the family drops such copies; a tensor whose name <paramref name="omit"/> accepts is left out.
    /// </summary>
    public static void Write(string path, ArchitectureDescription family, TransformerWeights weights, string prefix, bool storeTiedHead,
        Func<string, bool>? omit = null)
    {
        TransformerConfig c = weights.Config;
        TensorNameMap names = family.HfNames;
        var writer = new SafeTensorsWriter();
        void Tensor(string tensor, float[] values, params long[] shape)
        {
            if (omit?.Invoke(tensor) != true) writer.AddFloat32(tensor, shape, values);
        }
        void Norm(string tensor, NormLayer norm)
        {
            // Gemma's checkpoints store w of (1 + w): exact for weights in [0.5, 2], as the random ones are
            float[] weight = norm.Weight.Select(w => w - family.HfNormWeightOffset).ToArray();
            Tensor(tensor + ".weight", weight, norm.Weight.Length);
            if (norm.Bias is not null) Tensor(tensor + ".bias", norm.Bias, norm.Bias.Length);
        }
        void Linear(string tensor, LinearLayer linear)
        {
            var w = (Fp32Matrix)linear.Weight;
            Tensor(tensor + ".weight", w.Data, w.Rows, w.Cols);
            if (linear.Bias is not null) Tensor(tensor + ".bias", linear.Bias, linear.Bias.Length);
        }
        string Global(ModelTensor tensor) => prefix + names.Global(tensor);
        Tensor(Global(ModelTensor.TokenEmbedding) + ".weight", weights.TokenEmbeddingAsFloats(), c.VocabSize, c.EmbeddingWidth);
        if (weights.PositionEmbedding is { } positions) Tensor(Global(ModelTensor.PositionEmbedding) + ".weight", positions, positions.Length / c.HiddenSize, c.HiddenSize);
        if (weights.EmbeddingNorm is { } embeddingNorm) Norm(Global(ModelTensor.EmbeddingNorm), embeddingNorm);
        if (weights.ProjectIn is { } projectIn) Linear(Global(ModelTensor.ProjectIn), projectIn);
        if (weights.ProjectOut is { } projectOut) Linear(Global(ModelTensor.ProjectOut), projectOut);
        Norm(Global(ModelTensor.FinalNorm), weights.FinalNorm!);
        bool tied = ReferenceEquals(((Fp32Matrix)weights.LmHead.Weight).Data, weights.TokenEmbedding);
        if (!tied || storeTiedHead && family.Head == HeadTying.Tied) Linear(names.Global(ModelTensor.LmHead)!, weights.LmHead);
        for (int i = 0; i < c.NumLayers; i++)
        {
            LayerWeights l = weights.Layers[i];
            foreach (LayerTensor role in LayerTensors.All)
            {
                if (names.Layer(i, role) is not { } tensor) continue;
                if (role.IsNorm()) Norm(prefix + tensor, l.Norm(role)!);
                else if (l.Linear(role) is { } linear) Linear(prefix + tensor, linear);
            }
            foreach (FusedTensor fused in names.Fused)
                Linear(prefix + names.InLayer(i, fused.Name), Join(fused, fused.Parts.Select(p => l.Linear(p)!).ToArray(), c.HeadDim));
        }
        writer.Write(path);
    }

    // The parts' rows one after another, or per head (BLOOM: [heads, parts, head_dim]).
    private static LinearLayer Join(FusedTensor fused, LinearLayer[] parts, int headDim)
    {
        int cols = parts[0].InFeatures;
        var rows = new List<(float[] Row, float Bias)>();
        (float[], float) Row(LinearLayer part, int r) => (((Fp32Matrix)part.Weight).Row(r).ToArray(), part.Bias?[r] ?? 0);
        if (fused.Layout == FusedLayout.Concatenated)
            foreach (LinearLayer part in parts)
                for (int r = 0; r < part.OutFeatures; r++) rows.Add(Row(part, r));
        else
            for (int h = 0; h < parts[0].OutFeatures / headDim; h++)
                foreach (LinearLayer part in parts)
                    for (int j = 0; j < headDim; j++) rows.Add(Row(part, h * headDim + j));
        float[] weight = rows.SelectMany(r => r.Row).ToArray();
        return new LinearLayer(new Fp32Matrix(weight, rows.Count, cols), parts[0].Bias is null ? null : rows.Select(r => r.Bias).ToArray());
    }
}
