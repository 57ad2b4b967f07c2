namespace AgileQuant.Tests.Models.Onnx;

/// <summary>Builds small ONNX ModelProto byte streams by hand (independent of the reader under test).</summary>
internal static class OnnxModelBuilder
{
    /// <summary>Writes protocol-buffer wire format.</summary>
    internal static class Wire
    {
        public static byte[] Varint(ulong v)
        {
            var bytes = new List<byte>();
            while (v >= 0x80) { bytes.Add((byte)(v | 0x80)); v >>= 7; }
            bytes.Add((byte)v);
            return bytes.ToArray();
        }

        public static byte[] Field(int number, ulong value) => [.. Varint((ulong)number << 3), .. Varint(value)];

        public static byte[] Bytes(int number, byte[] payload) => [.. Varint(((ulong)number << 3) | 2), .. Varint((ulong)payload.Length), .. payload];

        public static byte[] Text(int number, string s) => Bytes(number, System.Text.Encoding.UTF8.GetBytes(s));
    }

    /// <summary>A TensorProto: dims, data_type, name, then raw_data and/or float_data and any extra fields.</summary>
    public static byte[] Tensor(string name, long[] dims, int dataType, byte[]? raw = null, float[]? floats = null, params byte[][] extra)
    {
        var t = new List<byte>();
        foreach (long d in dims) t.AddRange(Wire.Field(1, unchecked((ulong)d)));
        t.AddRange(Wire.Field(2, (ulong)dataType));
        t.AddRange(Wire.Text(8, name));
        if (raw is not null) t.AddRange(Wire.Bytes(9, raw));
        if (floats is not null) t.AddRange(Wire.Bytes(4, FloatBytes(floats)));
        foreach (byte[] e in extra) t.AddRange(e);
        return t.ToArray();
    }

    /// <summary>A NodeProto: inputs, outputs, op_type.</summary>
    public static byte[] Node(string opType, string[] inputs, string[] outputs) =>
        [.. inputs.SelectMany(i => Wire.Text(1, i)), .. outputs.SelectMany(o => Wire.Text(2, o)), .. Wire.Text(4, opType)];

    /// <summary>A ModelProto (ir_version 7, producer "test") whose graph holds <paramref name="nodes"/> and <paramref name="tensors"/>.</summary>
    public static byte[] ModelWithNodes(byte[][] nodes, params byte[][] tensors)
    {
        var graph = new List<byte>();
        foreach (byte[] n in nodes) graph.AddRange(Wire.Bytes(1, n));
        foreach (byte[] t in tensors) graph.AddRange(Wire.Bytes(5, t));
        return [.. Wire.Field(1, 7), .. Wire.Text(2, "test"), .. Wire.Bytes(7, graph.ToArray())];
    }

    /// <summary>A ModelProto with one MatMul(x, w) → y node and <paramref name="tensors"/> as initializers.</summary>
    public static byte[] Model(params byte[][] tensors) => ModelWithNodes([Node("MatMul", ["x", "w"], ["y"])], tensors);

    /// <summary>Little-endian float32 bytes.</summary>
    public static byte[] FloatBytes(params float[] values) => values.SelectMany(BitConverter.GetBytes).ToArray();

    /// <summary>
    /// A one-layer BERT encoder (vocab 5, hidden 4, 2 heads, intermediate 8, 3 positions, 2 token types) in the shape
    /// <c>BertOnnxLoader</c> maps: named Linear weights in raw_data, position embeddings in float_data, the attention
    /// output projection as a MatMul initializer feeding the bias's Add, and the head count from int64 initializers of
    /// the Concat that shapes the key's Reshape.
    /// </summary>
    /// <param name="nodes">Replaces <see cref="TinyBertNodes"/> when given.</param>
    public static byte[] TinyBert(byte[][]? nodes = null)
    {
        const int d = 4, inter = 8;
        int next = 0;
        float[] Values(int n) { var v = new float[n]; for (int i = 0; i < n; i++) v[i] = MathF.Sin(++next) * 0.5f; return v; }
        byte[] Raw(string name, params long[] dims) => Tensor(name, dims, 1, raw: FloatBytes(Values((int)dims.Aggregate(1L, (a, b) => a * b))));
        const string p = "encoder.layer.0.";
        var tensors = new List<byte[]>
        {
            Raw("embeddings.word_embeddings.weight", 5, d),
            Tensor("embeddings.position_embeddings.weight", [3, d], 1, floats: Values(3 * d)),
            Raw("embeddings.token_type_embeddings.weight", 2, d),
            Raw("embeddings.LayerNorm.weight", d), Raw("embeddings.LayerNorm.bias", d),
        };
        foreach (string linear in new[] { "attention.self.query", "attention.self.key", "attention.self.value" })
            tensors.AddRange([Raw(p + linear + ".weight", d, d), Raw(p + linear + ".bias", d)]);
        tensors.AddRange([
            Raw("onnx::MatMul_1", d, d), Raw(p + "attention.output.dense.bias", d),
            Raw(p + "attention.output.LayerNorm.weight", d), Raw(p + "attention.output.LayerNorm.bias", d),
            Raw(p + "intermediate.dense.weight", inter, d), Raw(p + "intermediate.dense.bias", inter),
            Raw(p + "output.dense.weight", d, inter), Raw(p + "output.dense.bias", d),
            Raw(p + "output.LayerNorm.weight", d), Raw(p + "output.LayerNorm.bias", d),
            Tensor("onnx::heads", [1], 7, raw: BitConverter.GetBytes(2L)),
            Tensor("onnx::head_dim", [1], 7, raw: BitConverter.GetBytes(2L)),
        ]);
        return ModelWithNodes(nodes ?? TinyBertNodes(), [.. tensors]);
    }

    /// <summary>The nodes of <see cref="TinyBert"/>: attention output MatMul + bias Add, key bias Add → Reshape(Concat(…, heads, head_dim)).</summary>
    public static byte[][] TinyBertNodes()
    {
        const string p = "encoder.layer.0.";
        return
        [
            Node("MatMul", ["context", "onnx::MatMul_1"], ["attention_out"]),
            Node("Add", ["attention_out", p + "attention.output.dense.bias"], ["attention_biased"]),
            Node("Add", ["key_out", p + "attention.self.key.bias"], ["key_biased"]),
            Node("Concat", ["batch", "sequence", "onnx::heads", "onnx::head_dim"], ["key_shape"]),
            Node("Reshape", ["key_biased", "key_shape"], ["key_heads"]),
        ];
    }
}
