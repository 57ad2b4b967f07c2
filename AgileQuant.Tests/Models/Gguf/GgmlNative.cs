using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;
using LLama.Abstractions;
using LLama.Native;

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
        nint cpu = NativeLibrary.Load(LibraryPath("ggml-cpu"));
        ((delegate* unmanaged<void>)NativeLibrary.GetExport(cpu, "ggml_cpu_init"))(); // fp16 tables; idempotent
        return cpu;
    });

    // ggml-cpu's struct ggml_type_traits_cpu: from_float, vec_dot, vec_dot_type, nrows
    [StructLayout(LayoutKind.Sequential)]
    private readonly struct CpuTraits
    {
        public readonly delegate* unmanaged<float*, void*, long, void> FromFloat;
        public readonly delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDot;
        public readonly GgmlType VecDotType;
        public readonly long Rows;
    }

    private static CpuTraits TraitsOf(GgmlType type) =>
        *((delegate* unmanaged<int, CpuTraits*>)NativeLibrary.GetExport(s_cpuLibrary.Value, "ggml_get_type_traits_cpu"))((int)type);

    /// <summary>
    /// <paramref name="x"/> converted as llama.cpp's CPU backend converts the input of a <paramref name="weightType"/> matrix:
    /// the <c>from_float</c> of its <c>vec_dot_type</c> (e.g. Q8_0 blocks for Q4_0 and IQ4_NL, Q8_K for the k-quants); the bytes and that type.
    /// </summary>
    public static (byte[] Blocks, GgmlType Type) ConvertInput(GgmlType weightType, ReadOnlySpan<float> x)
    {
        GgmlType type = TraitsOf(weightType).VecDotType;
        CpuTraits convert = TraitsOf(type);
        var blocks = new byte[GgmlTypeTraits.Find(type)!.RowBytes(x.Length)];
        fixed (float* input = x)
        fixed (byte* output = blocks)
            convert.FromFloat(input, output, x.Length);
        return (blocks, type);
    }

    /// <summary>
    /// y (tokens, rows) = llama.cpp's CPU product of the <paramref name="type"/> rows in <paramref name="bytes"/> (rows, cols) with
    /// x (tokens, cols), as its <c>mul_mat</c> forms it: each token converted by the <c>from_float</c> of the type's
    /// <c>vec_dot_type</c> (Q8_0, Q8_1, Q8_K or F16 blocks), then the type's <c>vec_dot</c> per row (libggml-cpu's traits).
    /// </summary>
    public static float[] MatMul(GgmlType type, ReadOnlySpan<byte> bytes, int rows, int cols, ReadOnlySpan<float> x, int tokens)
    {
        CpuTraits traits = TraitsOf(type);
        CpuTraits convert = TraitsOf(traits.VecDotType);
        if (traits.VecDot == null || convert.FromFloat == null) throw new NotSupportedException($"ggml-cpu has no vec_dot for {type}");
        long rowBytes = GgmlTypeTraits.Find(type)!.RowBytes(cols);
        if (bytes.Length != rowBytes * rows || x.Length != tokens * cols) throw new ArgumentException("shapes do not match");
        var y = new float[tokens * rows];
        var converted = new byte[GgmlTypeTraits.Find(traits.VecDotType)!.RowBytes(cols)];
        fixed (byte* weights = bytes)
        fixed (float* input = x)
        fixed (float* output = y)
        fixed (byte* activation = converted)
            for (int t = 0; t < tokens; t++)
            {
                convert.FromFloat(input + (long)t * cols, activation, cols);
                for (int r = 0; r < rows; r++) traits.VecDot(cols, output + (long)t * rows + r, 0, weights + r * rowBytes, 0, activation, 0, 1);
            }
        return y;
    }

    private static nint LoadGgmlBase()
    {
        LlamaCppSession.ConfigureLogging();
        NativeApi.llama_empty_call(); // loads libllama (and with it libggml-base) the way LLamaSharp chooses
        INativeLibrary llama = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama)
            ?? throw new InvalidOperationException("LLamaSharp reports no loaded llama library");
        string level = llama.Metadata?.AvxLevel switch
        {
            AvxLevel.None => "noavx",
            AvxLevel.Avx => "avx",
            AvxLevel.Avx2 => "avx2",
            AvxLevel.Avx512 => "avx512",
            var other => throw new InvalidOperationException($"no runtime folder known for LLamaSharp's AVX level {other}"),
        };
        s_level = level;
        return NativeLibrary.Load(LibraryPath("ggml-base"));
    }

    private static string? s_level;

    // LLamaSharp's copy of ggml library `name` for the AVX level it chose (after LoadGgmlBase)
    private static string LibraryPath(string name)
    {
        if (s_level is null) _ = s_library.Value; // LoadGgmlBase sets the level before it asks for a path
        string file = OperatingSystem.IsWindows() ? name + ".dll" : OperatingSystem.IsMacOS() ? $"lib{name}.dylib" : $"lib{name}.so";
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", s_level!, file);
        return File.Exists(path) ? path : throw new FileNotFoundException($"LLamaSharp's {name} library is not at {path}", path);
    }
}
