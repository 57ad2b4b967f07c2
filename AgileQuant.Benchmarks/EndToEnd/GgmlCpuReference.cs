using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;
using LLama.Abstractions;
using LLama.Native;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// The ggml libraries LLamaSharp ships beside the <c>libllama</c> it chose for this CPU (runtimes/RID/native/AVX-level/), and
/// llama.cpp's CPU matrix product from <c>libggml-cpu</c>'s type traits. One source for the benchmarks and the tests (which
/// link this file).
/// </summary>
internal static unsafe class GgmlCpuReference
{
    /// <summary>Loads LLamaSharp's copy of ggml library <paramref name="name"/> (e.g. <c>ggml-cpu</c>); libllama is loaded first, the way LLamaSharp chooses.</summary>
    public static nint Load(string name)
    {
        NativeApi.llama_empty_call();
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
        string file = OperatingSystem.IsWindows() ? name + ".dll" : OperatingSystem.IsMacOS() ? $"lib{name}.dylib" : $"lib{name}.so";
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", level, file);
        if (!File.Exists(path)) throw new FileNotFoundException($"LLamaSharp's {name} library is not at {path}", path);
        nint library = NativeLibrary.Load(path);
        if (name == "ggml-cpu") ((delegate* unmanaged<void>)NativeLibrary.GetExport(library, "ggml_cpu_init"))(); // fp16 tables; idempotent
        return library;
    }

    /// <summary>
    /// ggml-cpu's <c>struct ggml_type_traits_cpu</c> of one type: <c>from_float(x, y, k)</c>, <c>vec_dot(n, s, bs, x, bx, y, by,
    /// nrc)</c>, the type the activations are converted to, and rows per call.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public readonly struct Traits
    {
        /// <summary>F32 → <see cref="VecDotType"/> blocks.</summary>
        public readonly delegate* unmanaged<float*, void*, long, void> FromFloat;

        /// <summary>Dot product of a weight row and converted activations.</summary>
        public readonly delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDot;

        /// <summary>The activations' type.</summary>
        public readonly GgmlType VecDotType;

        /// <summary>Rows one call can produce.</summary>
        public readonly long Rows;
    }

    /// <summary>The traits of <paramref name="type"/> in the loaded <paramref name="cpuLibrary"/>.</summary>
    public static Traits TraitsOf(nint cpuLibrary, GgmlType type) =>
        *((delegate* unmanaged<int, Traits*>)NativeLibrary.GetExport(cpuLibrary, "ggml_get_type_traits_cpu"))((int)type);

    /// <summary>
    /// <paramref name="x"/> (cols) converted as llama.cpp's mul_mat converts the input of a <paramref name="weightType"/> matrix:
    /// by the <c>from_float</c> of the weight type's <c>vec_dot_type</c> (Q8_0, Q8_1, Q8_K or F16 blocks); the bytes and that type.
    /// </summary>
    public static (byte[] Blocks, GgmlType Type) ConvertInput(nint cpuLibrary, GgmlType weightType, ReadOnlySpan<float> x)
    {
        GgmlType type = TraitsOf(cpuLibrary, weightType).VecDotType;
        Traits convert = TraitsOf(cpuLibrary, type);
        if (convert.FromFloat == null) throw new NotSupportedException($"ggml-cpu has no from_float for {type}");
        var blocks = new byte[GgmlTypeTraits.Find(type)!.RowBytes(x.Length)];
        fixed (float* input = x)
        fixed (byte* output = blocks)
            convert.FromFloat(input, output, x.Length);
        return (blocks, type);
    }

    /// <summary>
    /// y (tokens, rows) = llama.cpp's CPU product of the <paramref name="type"/> rows in <paramref name="weights"/> (rows, cols)
    /// with x (tokens, cols): each token converted by <see cref="ConvertInput"/>, then the type's <c>vec_dot</c> per row.
    /// </summary>
    public static void MatMul(nint cpuLibrary, GgmlType type, ReadOnlySpan<byte> weights, int rows, int cols, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        Traits traits = TraitsOf(cpuLibrary, type);
        if (traits.VecDot == null) throw new NotSupportedException($"ggml-cpu has no vec_dot for {type}");
        long rowBytes = GgmlTypeTraits.Find(type)!.RowBytes(cols);
        if (weights.Length != rowBytes * rows || x.Length < tokens * cols || y.Length < tokens * rows) throw new ArgumentException("shapes do not match");
        fixed (byte* w = weights)
        fixed (float* output = y)
            for (int t = 0; t < tokens; t++)
            {
                (byte[] converted, _) = ConvertInput(cpuLibrary, type, x.Slice(t * cols, cols));
                fixed (byte* activation = converted)
                    for (int r = 0; r < rows; r++) traits.VecDot(cols, output + (long)t * rows + r, 0, w + r * rowBytes, 0, activation, 0, 1);
            }
    }
}
