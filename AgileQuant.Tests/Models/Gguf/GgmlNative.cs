using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;
using AgileQuant.Benchmarks.EndToEnd;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// llama.cpp's own ggml reference code, the independent reference for our GGUF weight types: the type traits
/// (<c>ggml_blck_size</c>, <c>ggml_type_size</c>, <c>ggml_type_name</c>), the file-making quantizer
/// (<c>ggml_quantize_chunk</c>) and the dequantizers (<c>dequantize_row_*</c>, <c>ggml_fp16_to_fp32_row</c>,
/// <c>ggml_bf16_to_fp32_row</c>), all exported by the <c>libggml-base</c> that LLamaSharp.Backend.Cpu ships.
/// The library is the one beside the <c>libllama</c> LLamaSharp chose for this CPU (runtimes/RID/native/AVX-level/); beside
/// it, <c>libggml-cpu</c>'s type traits give llama.cpp's CPU matrix product (<see cref="MatMul"/>).
/// </summary>
internal static unsafe class GgmlNative
{
    private static readonly Lazy<nint> s_library = new(LoadGgmlBase);

    /// <summary>Weights per block of <paramref name="type"/> as ggml counts them.</summary>
    public static long BlockSize(GgmlType type) => ((delegate* unmanaged<int, long>)Export("ggml_blck_size"))((int)type);

    /// <summary>Bytes per block of <paramref name="type"/> as ggml counts them (0 for a code ggml has removed).</summary>
    public static long TypeSize(GgmlType type) => (long)((delegate* unmanaged<int, nuint>)Export("ggml_type_size"))((int)type);

    /// <summary>ggml's name of <paramref name="type"/> (e.g. <c>q4_K</c>), or null.</summary>
    public static string? TypeName(GgmlType type) =>
        Marshal.PtrToStringUTF8(((delegate* unmanaged<int, nint>)Export("ggml_type_name"))((int)type));

    /// <summary>
    /// <paramref name="rows"/> rows of <paramref name="cols"/> floats quantized by ggml's file-making quantizer (what
    /// llama-quantize calls, without an importance matrix).
    /// </summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> values, int rows, int cols)
    {
        if (values.Length != rows * cols) throw new ArgumentException($"expected {rows * cols} values, found {values.Length}", nameof(values));
        var bytes = new byte[GgmlTypeTraits.Find(type)!.RowBytes(cols) * rows];
        var quantize = (delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint>)Export("ggml_quantize_chunk");
        nuint written;
        fixed (float* source = values)
        fixed (byte* destination = bytes)
            written = quantize((int)type, source, destination, 0, rows, cols, null);
        if ((long)written != bytes.Length) throw new InvalidOperationException($"ggml_quantize_chunk wrote {written} bytes, expected {bytes.Length}");
        return bytes;
    }

    /// <summary><paramref name="elements"/> values of the <paramref name="type"/> blocks in <paramref name="bytes"/>, by ggml's dequantizer.</summary>
    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> bytes, int elements)
    {
        if (bytes.Length != GgmlTypeTraits.Find(type)!.RowBytes(elements)) throw new ArgumentException($"expected the bytes of {elements} {type} elements, found {bytes.Length}", nameof(bytes));
        var values = new float[elements];
        if (type == GgmlType.F32)
        {
            bytes.CopyTo(MemoryMarshal.AsBytes(values.AsSpan())); // ggml reads F32 as stored
            return values;
        }
        string function = type switch
        {
            GgmlType.F16 => "ggml_fp16_to_fp32_row",
            GgmlType.BF16 => "ggml_bf16_to_fp32_row",
            _ => "dequantize_row_" + TypeName(type),
        };
        var dequantize = (delegate* unmanaged<void*, float*, long, void>)Export(function);
        fixed (byte* source = bytes)
        fixed (float* destination = values)
            dequantize(source, destination, elements);
        return values;
    }

    private static nint Export(string name) => NativeLibrary.GetExport(s_library.Value, name);

    private static readonly Lazy<nint> s_cpuLibrary = new(() =>
    {
        _ = s_library.Value; // logging configured, libllama loaded
        return GgmlCpuReference.Load("ggml-cpu");
    });

    /// <summary>
    /// <paramref name="x"/> converted as llama.cpp's CPU backend converts the input of a <paramref name="weightType"/> matrix:
    /// the <c>from_float</c> of its <c>vec_dot_type</c> (e.g. Q8_0 blocks for Q4_0 and IQ4_NL, Q8_K for the k-quants); the bytes and that type.
    /// </summary>
    public static (byte[] Blocks, GgmlType Type) ConvertInput(GgmlType weightType, ReadOnlySpan<float> x) =>
        GgmlCpuReference.ConvertInput(s_cpuLibrary.Value, weightType, x);

    /// <summary>
    /// y (tokens, rows) = llama.cpp's CPU product of the <paramref name="type"/> rows in <paramref name="bytes"/> (rows, cols) with
    /// x (tokens, cols), as its <c>mul_mat</c> forms it: each token converted by <see cref="ConvertInput"/>, then the type's
    /// <c>vec_dot</c> per row (libggml-cpu's traits).
    /// </summary>
    public static float[] MatMul(GgmlType type, ReadOnlySpan<byte> bytes, int rows, int cols, ReadOnlySpan<float> x, int tokens)
    {
        var y = new float[tokens * rows];
        GgmlCpuReference.MatMul(s_cpuLibrary.Value, type, bytes, rows, cols, x, y, tokens);
        return y;
    }

    private static nint LoadGgmlBase()
    {
        LlamaCppSession.ConfigureLogging();
        return GgmlCpuReference.Load("ggml-base");
    }
}
