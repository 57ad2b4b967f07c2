using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using LLama.Native;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// Our linears on llama.cpp's own preset files against llama.cpp's CPU arithmetic for the same tensors, called in its library
/// (<see cref="GgmlNative.MatMul"/>: the weight type's <c>vec_dot</c> on activations converted by its <c>vec_dot_type</c>'s
/// <c>from_float</c>). The inputs lie on the grid every activation quantizer of both engines represents exactly: values q/128
/// with integer |q| ≤ 127, and ±127/128 in every 16 columns, so each block's (and each token's) max|x| is 127/128 and its
/// scale 1/128, a power of two that fp16 holds exactly (llama.cpp's Q8_0/Q8_1 scales are fp16; ours FP32; Q8_K's FP32), and
/// the codes are q in both. Both engines then sum the same integers exactly and differ only in the order of their float steps,
/// so every output must agree within 1e-5 of Σ|w·x| (plus 1e-6): what a wrong value, block, scale, sub-block or row
/// mapping of one type, or a different activation code, would exceed by orders of magnitude (one code off by one moves an
/// output by |w|/128). This pins that our integer kernels compute llama.cpp's product on its files, so a quality difference
/// between the engines comes from elsewhere: where the activation roundings differ (docs/benchmarks-quality.md).
/// </summary>
[NonParallelizable]
public class LlamaCppLinearArithmeticTests
{
    private LlamaCppPresetModels _models = null!;

    [OneTimeSetUp]
    public void Build() => _models = new LlamaCppPresetModels(seed: 2024);

    [OneTimeTearDown]
    public void Delete() => _models.Dispose();

    [TestCaseSource(typeof(LlamaCppPresetModels), nameof(LlamaCppPresetModels.Presets))]
    public void OurLinears_OnExactlyQuantizedInputs_EqualLlamaCppsVecDot(LLamaFtype preset)
    {
        string path = _models.PathOf(preset);
        GgufFile file = GgufFile.Read(path);
        using LoadedModel loaded = ModelLoader.Load(path, new ModelLoadOptions());
        TransformerWeights weights = loaded.Model.Weights;
        using GgufTensorData data = GgufTensorData.Open(file);
        var random = new Random(7);
        var checkedTypes = new SortedSet<string>();
        foreach ((string name, IWeightMatrix matrix) in Linears(weights))
        {
            GgufTensorInfo tensor = file.FindTensor(name)!;
            const int tokens = 3;
            float[] x = GridInputs(random, tokens, matrix.Cols);
            var ours = new float[tokens * matrix.Rows];
            loaded.Model.Kernel.MatMul(matrix, x, ours, tokens);
            ReadOnlySpan<byte> bytes = data.Bytes(tensor, 0, (int)tensor.ByteSize);
            float[] theirs = GgmlNative.MatMul(tensor.Type, bytes, matrix.Rows, matrix.Cols, x, tokens);
            float[] w = GgmlNative.Dequantize(tensor.Type, bytes, (int)tensor.ElementCount); // (rows, cols)
            double worst = 0;
            for (int t = 0; t < tokens; t++)
                for (int r = 0; r < matrix.Rows; r++)
                {
                    double magnitude = 0;
                    for (int c = 0; c < matrix.Cols; c++) magnitude += Math.Abs((double)w[r * matrix.Cols + c] * x[t * matrix.Cols + c]);
                    double difference = Math.Abs(ours[t * matrix.Rows + r] - theirs[t * matrix.Rows + r]);
                    double tolerance = 1e-5 * magnitude + 1e-6;
                    worst = Math.Max(worst, difference / tolerance);
                    Assert.That(difference, Is.LessThanOrEqualTo(tolerance),
                        $"{preset} {name} ({tensor.Type} as {matrix.GetType().Name}), token {t}, row {r}: ours {ours[t * matrix.Rows + r]}, llama.cpp {theirs[t * matrix.Rows + r]}");
                }
            checkedTypes.Add($"{tensor.Type} ({worst:F2} of the tolerance at most)");
        }
        TestContext.Out.WriteLine($"{preset}: " + string.Join(", ", checkedTypes));
    }

    /// <summary>
    /// On ordinary (Gaussian, heavy-tailed) inputs our per-group activation codes are llama.cpp's codes for the same inputs:
    /// Q8_0 blocks of 32 (its x86 <c>quantize_row_q8_0</c>: multiplier 127/max, round half to even), the activation type of
    /// Q4_0/Q5_0/Q8_0/IQ4_NL, and Q8_K blocks of 256 (codes of the opposite sign when the block's extreme is positive, its
    /// scale −max/127 in FP32), that of the k-quants and IQ4_XS; the scales differ only in that Q8_0 keeps fp16(max/127) where we keep
    /// max/127 in FP32 (ours rounded to fp16 equals theirs). So llama.cpp's activations carry one rounding more than ours.
    /// </summary>
    [TestCase(32, GgmlType.IQ4_NL)]
    [TestCase(256, GgmlType.Q4_K)]
    public void OurActivationCodes_EqualLlamaCpps(int groupSize, GgmlType weightType)
    {
        var random = new Random(11);
        const int cols = 4096;
        float[] x = [.. Enumerable.Range(0, cols).Select(_ => (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()) * (random.Next(50) == 0 ? 20 : 1)))];
        var ours = new AgileQuant.Intrinsics.Quantization.QuantizedActivations();
        ours.Quantize(x, 1, cols, 8, groupSize, AgileQuant.Intrinsics.Quantization.ActivationOrder.Plain, groupScales: true);
        (byte[] blocks, GgmlType type) = GgmlNative.ConvertInput(weightType, x);
        int blockBytes = (int)GgmlTypeTraits.Find(type)!.RowBytes(groupSize);
        for (int b = 0; b < cols / groupSize; b++)
        {
            ReadOnlySpan<byte> block = blocks.AsSpan(b * blockBytes, blockBytes);
            float ourScale = ours.GroupScales[b];
            if (type == GgmlType.Q8_0)
            {
                Assert.That(System.Runtime.InteropServices.MemoryMarshal.Read<Half>(block), Is.EqualTo((Half)ourScale), $"block {b}: fp16 scale");
                for (int i = 0; i < groupSize; i++)
                    Assert.That((sbyte)block[2 + i], Is.EqualTo(ours.Codes[b * groupSize + i]), $"block {b}, code {i}");
            }
            else
            {
                Assert.That(type, Is.EqualTo(GgmlType.Q8_K));
                float theirScale = System.Runtime.InteropServices.MemoryMarshal.Read<float>(block);
                int sign = Math.Sign(theirScale);
                Assert.That(Math.Abs(theirScale), Is.EqualTo(ourScale).Within(1e-4).Percent, $"block {b}: FP32 scale (1/iscale against max/127: an ulp apart)");
                for (int i = 0; i < groupSize; i++)
                    Assert.That(sign * (sbyte)block[4 + i], Is.EqualTo(ours.Codes[b * groupSize + i]), $"block {b}, code {i}");
            }
        }
    }

    /// <summary>
    /// x (tokens, cols) = q/128, q uniform in −127..127, one entry of every 16 columns ±127, and every 32-block's Σq inside
    /// ±2047 (so Q8_1's fp16 d·Σq is exact too).
    /// </summary>
    internal static float[] GridInputs(Random random, int tokens, int cols)
    {
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
            for (int block = 0; block < cols; block += 32)
            {
                int[] q;
                do
                {
                    q = [.. Enumerable.Range(0, 32).Select(_ => random.Next(-127, 128))];
                    for (int g = 0; g < 32; g += 16) q[g + random.Next(16)] = random.Next(2) == 0 ? 127 : -127;
                }
                while (Math.Abs(q.Sum()) > 2047);
                for (int i = 0; i < 32 && block + i < cols; i++) x[t * cols + block + i] = q[i] / 128f;
            }
        return x;
    }

    // Every linear of the loaded LLaMA with its GGUF name (the head's tensor is token_embd when tied).
    private static IEnumerable<(string Name, IWeightMatrix Matrix)> Linears(TransformerWeights weights)
    {
        string[] names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
        for (int i = 0; i < weights.Layers.Count; i++)
        {
            LinearLayer[] linears = [.. weights.Layers[i].Linears.Select(l => l.Linear)];
            for (int k = 0; k < names.Length; k++) yield return ($"blk.{i}.{names[k]}.weight", linears[k].Weight);
        }
        yield return ("output.weight", weights.LmHead.Weight);
    }
}
