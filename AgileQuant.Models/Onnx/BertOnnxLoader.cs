using AgileQuant.Core.Encoder;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Onnx;

/// <summary>
/// Maps the initializers of a BERT-family ONNX export (Hugging Face <c>BertModel</c> through <c>torch.onnx.export</c>,
/// e.g. sentence-transformers/all-MiniLM-L6-v2) onto <see cref="EncoderWeights"/>.
/// </summary>
/// <remarks>
/// Embeddings, LayerNorms and biases keep their Hugging Face names (<c>embeddings.word_embeddings.weight</c>,
/// <c>encoder.layer.{i}.attention.self.query.bias</c>, ...). The exporter stores each linear's weight transposed as
/// an anonymous MatMul operand (<c>927</c>, <c>onnx::MatMul_927</c>: dims [in, out]), so a linear <c>X</c> is found
/// through the graph: the <c>Add</c> node with input <c>X.bias</c> takes the output of a <c>MatMul</c> node whose
/// second input is the weight initializer. A named <c>X.weight</c> initializer ([out, in], as PyTorch stores it) is
/// used directly when present. Heads come from the key projection's reshape: <c>Reshape(key, Concat(batch, seq,
/// heads, head_dim))</c> with heads and head_dim as INT64 initializers.
/// </remarks>
public static class BertOnnxLoader
{
    /// <summary>Reads <paramref name="onnxPath"/> and maps it; <paramref name="numHeads"/> 0 derives the head count from the graph.</summary>
    /// <exception cref="ModelFormatException">The file is malformed or is not a BERT encoder export.</exception>
    public static EncoderWeights Load(string onnxPath, int numHeads = 0) => Map(OnnxModelFile.Read(onnxPath), numHeads);

    /// <summary>Maps an already parsed model; <paramref name="numHeads"/> 0 derives the head count from the graph.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing or has the wrong shape or type.</exception>
    public static EncoderWeights Map(OnnxModelFile model, int numHeads = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfNegative(numHeads);
        var graph = new GraphIndex(model);
        float[] tokenEmbedding = graph.Matrix("embeddings.word_embeddings.weight", out int vocab, out int d);
        float[] positions = graph.Matrix("embeddings.position_embeddings.weight", out int maxPositions, out _, d);
        float[] tokenTypes = graph.Matrix("embeddings.token_type_embeddings.weight", out int typeCount, out _, d);
        NormLayer embeddingNorm = graph.Norm("embeddings.LayerNorm", d);
        int layerCount = 0;
        while (model.Find($"encoder.layer.{layerCount}.attention.self.query.bias") is not null) layerCount++;
        if (layerCount == 0)
            throw new ModelFormatException(model.FilePath, "encoder.layer.0.attention.self.query.bias", "expected a BERT encoder layer, found no such initializer");
        int intermediate = (int)graph.Tensor("encoder.layer.0.intermediate.dense.bias").ElementCount;
        var layers = new LayerWeights[layerCount];
        for (int l = 0; l < layerCount; l++)
        {
            string p = $"encoder.layer.{l}.";
            layers[l] = new LayerWeights
            {
                Query = graph.Linear(p + "attention.self.query", d, d),
                Key = graph.Linear(p + "attention.self.key", d, d),
                Value = graph.Linear(p + "attention.self.value", d, d),
                Output = graph.Linear(p + "attention.output.dense", d, d),
                AttentionNorm = graph.Norm(p + "attention.output.LayerNorm", d),
                Up = graph.Linear(p + "intermediate.dense", intermediate, d),
                Down = graph.Linear(p + "output.dense", d, intermediate),
                MlpNorm = graph.Norm(p + "output.LayerNorm", d),
            };
        }
        int heads = numHeads > 0 ? numHeads : graph.HeadCount("encoder.layer.0.attention.self.key.bias", d);
        var weights = new EncoderWeights
        {
            Config = new EncoderConfig
            {
                VocabSize = vocab,
                HiddenSize = d,
                NumLayers = layerCount,
                NumHeads = heads,
                IntermediateSize = intermediate,
                MaxPositions = maxPositions,
                TokenTypes = typeCount,
            },
            TokenEmbedding = tokenEmbedding,
            PositionEmbedding = positions,
            TokenTypeEmbedding = tokenTypes,
            EmbeddingNorm = embeddingNorm,
            Layers = layers,
        };
        try
        {
            weights.Validate();
        }
        catch (Core.AgileQuantException e) when (e is not ModelFormatException)
        {
            throw new ModelFormatException(model.FilePath, null, e.Message, e);
        }
        return weights;
    }

    /// <summary>Initializers by name and node outputs by value name.</summary>
    private sealed class GraphIndex
    {
        private readonly OnnxModelFile _model;
        private readonly Dictionary<string, OnnxNode> _producer = new(StringComparer.Ordinal);
        private readonly Dictionary<string, List<OnnxNode>> _consumers = new(StringComparer.Ordinal);

        public GraphIndex(OnnxModelFile model)
        {
            _model = model;
            foreach (OnnxNode node in model.Nodes)
            {
                foreach (string output in node.Outputs) _producer.TryAdd(output, node);
                foreach (string input in node.Inputs)
                {
                    if (!_consumers.TryGetValue(input, out List<OnnxNode>? list)) _consumers[input] = list = [];
                    list.Add(node);
                }
            }
        }

        public OnnxTensor Tensor(string name) =>
            _model.Find(name) ?? throw new ModelFormatException(_model.FilePath, name, "expected this initializer, found none");

        public float[] Matrix(string name, out int rows, out int cols, int expectedCols = 0)
        {
            OnnxTensor t = Tensor(name);
            if (t.Dims.Count != 2 || (expectedCols > 0 && t.Dims[1] != expectedCols))
                throw new ModelFormatException(_model.FilePath, name, $"expected dims [rows, {(expectedCols > 0 ? expectedCols : "cols")}], found [{string.Join(", ", t.Dims)}]");
            if (t.Dims[0] < 1 || t.Dims[1] < 1) throw new ModelFormatException(_model.FilePath, name, $"expected non-empty dims, found [{string.Join(", ", t.Dims)}]");
            rows = (int)t.Dims[0];
            cols = (int)t.Dims[1];
            return t.ToFloat32();
        }

        public float[] Vector(string name, int length)
        {
            OnnxTensor t = Tensor(name);
            if (t.Dims.Count != 1 || t.Dims[0] != length)
                throw new ModelFormatException(_model.FilePath, name, $"expected dims [{length}], found [{string.Join(", ", t.Dims)}]");
            return t.ToFloat32();
        }

        public NormLayer Norm(string prefix, int d) =>
            new(NormKind.LayerNorm, Vector(prefix + ".weight", d), Vector(prefix + ".bias", d), 1e-12f);

        /// <summary>y = x·Wᵀ + b with W (outFeatures, inFeatures), from X.weight or from the MatMul feeding X.bias's Add.</summary>
        public LinearLayer Linear(string prefix, int outFeatures, int inFeatures)
        {
            float[] bias = Vector(prefix + ".bias", outFeatures);
            string weightName = prefix + ".weight";
            if (_model.Find(weightName) is { } named)
            {
                if (named.Dims.Count != 2 || named.Dims[0] != outFeatures || named.Dims[1] != inFeatures)
                    throw new ModelFormatException(_model.FilePath, weightName, $"expected dims [{outFeatures}, {inFeatures}], found [{string.Join(", ", named.Dims)}]");
                return new LinearLayer(new Fp32Matrix(named.ToFloat32(), outFeatures, inFeatures), bias);
            }
            OnnxTensor transposed = MatMulOperandBefore(prefix + ".bias");
            if (transposed.Dims.Count != 2 || transposed.Dims[0] != inFeatures || transposed.Dims[1] != outFeatures)
                throw new ModelFormatException(_model.FilePath, transposed.Name, $"expected the MatMul weight of {prefix} with dims [{inFeatures}, {outFeatures}], found [{string.Join(", ", transposed.Dims)}]");
            float[] wt = transposed.ToFloat32(); // (in, out)
            var w = new float[wt.Length];        // (out, in)
            for (int i = 0; i < inFeatures; i++)
                for (int o = 0; o < outFeatures; o++) w[o * inFeatures + i] = wt[i * outFeatures + o];
            return new LinearLayer(new Fp32Matrix(w, outFeatures, inFeatures), bias);
        }

        /// <summary>The initializer operand of the MatMul whose output the Add consuming <paramref name="biasName"/> adds to.</summary>
        private OnnxTensor MatMulOperandBefore(string biasName)
        {
            OnnxNode add = Consumers(biasName).FirstOrDefault(n => n.OpType == "Add" && n.Inputs.Count == 2)
                ?? throw new ModelFormatException(_model.FilePath, biasName, "expected an Add node taking this bias, found none");
            string other = add.Inputs[0] == biasName ? add.Inputs[1] : add.Inputs[0];
            if (!_producer.TryGetValue(other, out OnnxNode? matMul) || matMul.OpType != "MatMul" || matMul.Inputs.Count != 2)
                throw new ModelFormatException(_model.FilePath, biasName, $"expected the bias's Add to take a MatMul output, found '{other}' from {(_producer.TryGetValue(other, out OnnxNode? n) ? n.OpType : "no node")}");
            return _model.Find(matMul.Inputs[1])
                ?? throw new ModelFormatException(_model.FilePath, biasName, $"expected the MatMul before the bias to multiply by an initializer, found '{matMul.Inputs[1]}'");
        }

        /// <summary>heads from Reshape(key + bias, Concat(…, heads, head_dim)) after the key bias's Add.</summary>
        public int HeadCount(string keyBias, int d)
        {
            OnnxNode? add = Consumers(keyBias).FirstOrDefault(n => n.OpType == "Add" && n.Outputs.Count > 0);
            OnnxNode? reshape = add is null ? null : Consumers(add.Outputs[0]).FirstOrDefault(n => n.OpType == "Reshape" && n.Inputs.Count == 2);
            if (reshape is not null && _producer.TryGetValue(reshape.Inputs[1], out OnnxNode? concat) && concat.OpType == "Concat" && concat.Inputs.Count == 4
                && _model.Find(concat.Inputs[2]) is { DataType: OnnxDataType.Int64, ElementCount: 1 } headsTensor
                && _model.Find(concat.Inputs[3]) is { DataType: OnnxDataType.Int64, ElementCount: 1 } headDimTensor)
            {
                long heads = headsTensor.ToInt64()[0], headDim = headDimTensor.ToInt64()[0];
                if (heads > 0 && headDim > 0 && heads * headDim == d) return (int)heads;
                throw new ModelFormatException(_model.FilePath, headsTensor.Name, $"expected heads × head_dim = {d}, found {heads} × {headDim}");
            }
            throw new ModelFormatException(_model.FilePath, keyBias, "expected the key projection to be reshaped into (heads, head_dim) by constant initializers, found another graph; pass the head count explicitly");
        }

        private IReadOnlyList<OnnxNode> Consumers(string value) => _consumers.TryGetValue(value, out List<OnnxNode>? list) ? list : [];
    }
}
