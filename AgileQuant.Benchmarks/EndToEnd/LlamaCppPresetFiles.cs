using AgileQuant.Models.Gguf;
using LLama.Native;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// GGUF files quantized by llama.cpp's own quantizer (<c>llama_model_quantize</c> through LLamaSharp, default parameters,
/// no importance matrix): what <c>llama-quantize</c> writes for a preset, with the per-tensor type mix it chooses (e.g. a
/// Q6_K head in Q4_0 files, Q6_K halves of ffn_down/attn_v in Q4_K_M, fallback types for rows the blocks do not divide).
/// </summary>
public static class LlamaCppPresetFiles
{
    /// <summary>The presets of the issue-18 comparison.</summary>
    public static IReadOnlyList<string> Default { get; } = ["Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"];

    /// <summary>llama.cpp's file type for a preset name (<c>Q4_K_M</c> → <c>MOSTLY_Q4_K_M</c>); throws naming the known ones.</summary>
    public static LLamaFtype Parse(string preset)
    {
        ArgumentNullException.ThrowIfNull(preset);
        if (Enum.TryParse("MOSTLY_" + preset, ignoreCase: true, out LLamaFtype type) && Enum.IsDefined(type)) return type;
        string known = string.Join(", ", Enum.GetNames<LLamaFtype>().Where(n => n.StartsWith("MOSTLY_", StringComparison.Ordinal)).Select(n => n["MOSTLY_".Length..]));
        throw new ArgumentException($"unknown llama-quantize preset '{preset}'; expected one of {known}");
    }

    /// <summary>
    /// The file llama.cpp's quantizer makes of the F32 GGUF <paramref name="f32Path"/> for <paramref name="preset"/>, written
    /// beside it as <c>{name}-llamacpp-{preset}.gguf</c> ({name} without a <c>-F32</c> suffix) unless it exists (same input, same bytes).
    /// </summary>
    public static string Quantize(string f32Path, string preset, int threads)
    {
        ArgumentException.ThrowIfNullOrEmpty(f32Path);
        string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(f32Path))!, $"{Path.GetFileNameWithoutExtension(f32Path).Replace("-F32", "", StringComparison.Ordinal)}-llamacpp-{preset}.gguf");
        if (File.Exists(path)) return path;
        LlamaCppEngine.ConfigureLogging();
        NativeApi.llama_empty_call(); // loads libllama the way LLamaSharp chooses: the quantize entry points alone do not
        LLamaModelQuantizeParams parameters = LLamaModelQuantizeParams.Default();
        parameters.ftype = Parse(preset);
        parameters.nthread = threads;
        string partial = path + ".partial";
        uint status = NativeApi.llama_model_quantize(f32Path, partial, ref parameters);
        if (status != 0)
        {
            File.Delete(partial);
            throw new InvalidOperationException($"llama_model_quantize of {f32Path} to {preset} returned {status}");
        }
        File.Move(partial, path);
        return path;
    }

    /// <summary>The tensor-type mix of a GGUF file, most frequent first, e.g. <c>Q4_K ×19, Q6_K ×6, F32 ×9</c>.</summary>
    public static string TypeMix(string path) =>
        string.Join(", ", GgufFile.Read(path).Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} ×{g.Count()}"));
}
