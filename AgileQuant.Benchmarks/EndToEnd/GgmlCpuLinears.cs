using System.Runtime.InteropServices;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>A GGUF weight tensor (Rows, Cols) as the file stores it: Rows rows of ggml blocks of its type, for <see cref="GgmlCpuKernel"/>.</summary>
public sealed class GgmlFileMatrix : IWeightMatrix
{
    /// <summary>Holds <paramref name="blocks"/>, the (rows, row bytes) blocks of a <paramref name="type"/> tensor of shape (rows, cols).</summary>
    public GgmlFileMatrix(GgmlType type, byte[] blocks, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        RowBytes = (int)(GgmlTypeTraits.Find(type) ?? throw new ArgumentException($"unknown ggml type {type}", nameof(type))).RowBytes(cols);
        if (blocks.Length != (long)RowBytes * rows) throw new ArgumentException($"expected {RowBytes * (long)rows} bytes of {type} blocks, found {blocks.Length}", nameof(blocks));
        (Type, Blocks, Rows, Cols) = (type, blocks, rows, cols);
    }

    /// <summary>The tensor's ggml type.</summary>
    public GgmlType Type { get; }

    /// <summary>The file's bytes (Rows, <see cref="RowBytes"/>).</summary>
    public byte[] Blocks { get; }

    /// <summary>Bytes per row.</summary>
    public int RowBytes { get; }

    /// <inheritdoc />
    public int Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <inheritdoc />
    public long ByteCount => Blocks.LongLength;

    /// <summary>Tensor <paramref name="name"/> of <paramref name="data"/>'s file as stored.</summary>
    public static GgmlFileMatrix Read(GgufTensorData data, string name)
    {
        ArgumentNullException.ThrowIfNull(data);
        GgufTensorInfo tensor = data.File.FindTensor(name) ?? throw new ArgumentException($"no tensor '{name}' in {data.File.FilePath}", nameof(name));
        if (tensor.Shape.Count != 2) throw new ArgumentException($"'{name}' is not a matrix", nameof(name));
        return new GgmlFileMatrix(tensor.Type, data.Bytes(tensor, 0, (int)tensor.ByteSize).ToArray(), (int)tensor.Shape[1], (int)tensor.Shape[0]);
    }
}

/// <summary>
/// llama.cpp's CPU arithmetic for a linear, taken from its own library (the <c>libggml-cpu</c> LLamaSharp loaded for this
/// CPU) through <c>ggml_get_type_traits_cpu</c>: each token's input is converted into the weight type's <c>vec_dot_type</c>
/// by that type's <c>from_float</c> (Q8_0 blocks of 32 with an fp16 scale for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K blocks of
/// 256 for the k-quants and IQ4_XS, F16 for F16 weights) and every output is the type's <c>vec_dot</c> of a stored row with it:
/// <c>y[t, r] = vec_dot(W_r, from_float(x_t))</c>. An independent reference for our integer kernels on a GGUF file; other
/// matrices go to <paramref name="others"/>.
/// </summary>
public sealed unsafe class GgmlCpuKernel(IMatMulKernel others) : IMatMulKernel
{
    /// <inheritdoc />
    public string Name => $"ggml-cpu vec_dot, else {others.Name}";

    /// <inheritdoc />
    public bool Supports(IWeightMatrix weights) => weights is GgmlFileMatrix || others.Supports(weights);

    /// <inheritdoc />
    public void Prepare(IWeightMatrix weights)
    {
        if (weights is not GgmlFileMatrix) others.Prepare(weights);
    }

    /// <inheritdoc />
    public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        if (weights is not GgmlFileMatrix w)
        {
            others.MatMul(weights, x, y, tokens);
            return;
        }
        GgmlCpuReference.MatMul(GgmlCpu.CpuLibrary, w.Type, w.Blocks, w.Rows, w.Cols, x, y, tokens);
    }

    /// <summary>
    /// The model of <paramref name="data"/>'s file with the linears whose GGUF type <paramref name="useGgml"/> accepts held as
    /// <see cref="GgmlFileMatrix"/> (run by this kernel) and the others as <paramref name="loaded"/> holds them; LLaMA tensor names.
    /// </summary>
    public static TransformerWeights WithFileMatrices(TransformerWeights loaded, GgufTensorData data, Func<GgmlType, bool> useGgml)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(useGgml);
        LinearLayer Take(string name, LinearLayer held) =>
            useGgml(data.File.FindTensor(name)!.Type) ? new LinearLayer(GgmlFileMatrix.Read(data, name), held.Bias) : held;
        string headName = data.File.FindTensor("output.weight") is null ? "token_embd.weight" : "output.weight";
        return new TransformerWeights
        {
            Config = loaded.Config, TokenEmbedding = loaded.TokenEmbedding, StoredTokenEmbedding = loaded.StoredTokenEmbedding,
            Layers = loaded.Layers.Select((l, i) => l.MapLinears((role, linear) => Take($"blk.{i}.{LlamaNames[role]}.weight", linear))).ToArray(),
            FinalNorm = loaded.FinalNorm, LmHead = Take(headName, loaded.LmHead),
        };
    }

    /// <summary>
    /// <paramref name="loaded"/> with every linear of a type <paramref name="dequantize"/> accepts replaced by an FP32 matrix of
    /// the file's values, dequantized by ggml's own <c>to_float</c> (llama.cpp's reference dequantizer).
    /// </summary>
    public static TransformerWeights WithFileValues(TransformerWeights loaded, GgufTensorData data, Func<GgmlType, bool> dequantize)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(dequantize);
        LinearLayer Take(string name, LinearLayer held)
        {
            if (!dequantize(data.File.FindTensor(name)!.Type)) return held;
            GgmlFileMatrix stored = GgmlFileMatrix.Read(data, name);
            return new LinearLayer(new Fp32Matrix(GgmlCpu.Dequantize(stored), stored.Rows, stored.Cols), held.Bias);
        }
        string headName = data.File.FindTensor("output.weight") is null ? "token_embd.weight" : "output.weight";
        return new TransformerWeights
        {
            Config = loaded.Config, TokenEmbedding = loaded.TokenEmbedding, StoredTokenEmbedding = loaded.StoredTokenEmbedding,
            Layers = loaded.Layers.Select((l, i) => l.MapLinears((role, linear) => Take($"blk.{i}.{LlamaNames[role]}.weight", linear))).ToArray(),
            FinalNorm = loaded.FinalNorm, LmHead = Take(headName, loaded.LmHead),
        };
    }

    // llama.cpp's LLaMA tensor names of the decoder linears (blk.N.{name}.weight)
    private static readonly Dictionary<LayerTensor, string> LlamaNames = new()
    {
        [LayerTensor.Query] = "attn_q", [LayerTensor.Key] = "attn_k", [LayerTensor.Value] = "attn_v", [LayerTensor.Output] = "attn_output",
        [LayerTensor.Gate] = "ffn_gate", [LayerTensor.Up] = "ffn_up", [LayerTensor.Down] = "ffn_down",
    };
}

/// <summary>Entry points of the ggml libraries LLamaSharp loaded for this CPU (the same code llama.cpp's CPU backend runs).</summary>
public static unsafe class GgmlCpu
{
    private static readonly Lazy<(nint Base, nint Cpu)> s_libraries = new(() =>
    {
        LlamaCppEngine.ConfigureLogging();
        return (GgmlCpuReference.Load("ggml-base"), GgmlCpuReference.Load("ggml-cpu"));
    });

    /// <summary>LLamaSharp's libggml-cpu, loaded and initialized.</summary>
    public static nint CpuLibrary => s_libraries.Value.Cpu;

    /// <summary>The values of <paramref name="matrix"/> (Rows, Cols) by ggml's <c>to_float</c> of its type (ggml-base's type traits).</summary>
    public static float[] Dequantize(GgmlFileMatrix matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        var values = new float[(long)matrix.Rows * matrix.Cols];
        if (matrix.Type == GgmlType.F32)
        {
            Buffer.BlockCopy(matrix.Blocks, 0, values, 0, matrix.Blocks.Length);
            return values;
        }
        // struct ggml_type_traits: type_name, blck_size, blck_size_interleave, type_size, is_quantized, to_float, from_float_ref
        var get = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(s_libraries.Value.Base, "ggml_get_type_traits");
        var toFloat = *(delegate* unmanaged<void*, float*, long, void>*)(get((int)matrix.Type) + 5 * sizeof(long));
        if (toFloat == null) throw new NotSupportedException($"ggml has no to_float for {matrix.Type}");
        fixed (byte* blocks = matrix.Blocks)
        fixed (float* y = values)
            for (int r = 0; r < matrix.Rows; r++) toFloat(blocks + (long)r * matrix.RowBytes, y + (long)r * matrix.Cols, matrix.Cols);
        return values;
    }
}
