using System.Runtime.InteropServices;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>
/// Our reference quantizers (<see cref="GgmlBlockCodec"/>: what GGUF export writes) against llama.cpp's own
/// <c>ggml_quantize_chunk</c> without an importance matrix (which runs <c>quantize_row_*_ref</c>): the blocks must be bit
/// for bit ggml's, and dequantized by ggml's dequantizer they must lie within the stated error of the input.
/// </summary>
public class GgmlQuantizerTests
{
    private static readonly GgmlType[] Quantized = [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.Q8_0, GgmlType.Q4_0];

    [TestCaseSource(nameof(Quantized))]
    public void OurBlocks_AreBitIdenticalToGgmls(GgmlType type)
    {
        const int cols = 1024;
        float[] values = Rows(new Random(40 + (int)type), out int rows, cols); // (rows, cols)
        byte[] ggml = GgmlNative.Quantize(type, values, rows, cols);
        byte[] ours = Quantize(type, values, rows, cols);
        int rowBytes = (int)GgmlTypeTraits.Find(type)!.RowBytes(cols), blockBytes = GgmlTypeTraits.Find(type)!.BlockBytes;
        for (int i = 0; i < ours.Length; i++)
            if (ours[i] != ggml[i])
                Assert.Fail($"{type}: row {i / rowBytes}, block {i % rowBytes / blockBytes}, byte {i % blockBytes}: ours 0x{ours[i]:X2}, ggml's 0x{ggml[i]:X2}");
    }

    /// <summary>
    /// The bound per block. Each weight is re-quantized with its sub-block's final step s = d · sc (Q6_K: codes −32..31,
    /// value s · q; Q4_K: codes 0..15, value s · q − dmin · m), rounding to the nearest code, so it lies within s / 2 of its
    /// value unless it lies beyond the codes' range, where it takes the range's end; fp16 and float rounding of the
    /// dequantized value add at most 2⁻²⁰ of its magnitude. On Gaussian rows the RMS error of a super-block is at most
    /// 0.05 · rms(x) for Q6_K (≈ step / √12 with step ≈ 3.5σ / 31.5) and 0.12 · rms(x) for Q4_K (≈ 4σ / 15 / √12).
    /// </summary>
    [TestCase(GgmlType.Q6_K, 0.05)]
    [TestCase(GgmlType.Q4_K, 0.12)]
    public void OurBlocks_DequantizedByGgml_LieWithinTheStatedErrorOfTheInput(GgmlType type, double rmsBound)
    {
        const int cols = 1024;
        float[] values = Rows(new Random(90 + (int)type), out int rows, cols);
        byte[] bytes = Quantize(type, values, rows, cols);
        float[] restored = GgmlNative.Dequantize(type, bytes, rows * cols);
        int subBlock = type == GgmlType.Q6_K ? 16 : 32;
        for (int b = 0; b < rows * cols / 256; b++)
        {
            ReadOnlySpan<byte> block = bytes.AsSpan(b * GgmlTypeTraits.Find(type)!.BlockBytes, GgmlTypeTraits.Find(type)!.BlockBytes);
            double squares = 0, errors = 0;
            for (int s = 0; s < 256 / subBlock; s++)
            {
                (double step, double low, double high) = SubBlockRange(type, block, s);
                for (int l = 0; l < subBlock; l++)
                {
                    int i = 256 * b + subBlock * s + l;
                    double x = values[i], error = Math.Abs(x - restored[i]);
                    double nearest = step / 2 + Math.Abs(restored[i]) * Math.Pow(2, -20) + 1e-30;
                    bool clipped = x < low - step / 2 || x > high + step / 2;
                    if (!(error <= nearest || clipped && Math.Abs(restored[i] - (x < low ? low : high)) <= nearest))
                        Assert.Fail($"{type} block {b}, sub-block {s}, weight {l}: x = {x:R}, dequantized {restored[i]:R}, step {step:G4}, range [{low:G4}, {high:G4}]");
                    squares += x * x;
                    errors += (x - restored[i]) * (x - restored[i]);
                }
            }
            if (b / (cols / 256) >= GaussianRowsFrom) // Gaussian rows: the RMS error of the super-block
                Assert.That(Math.Sqrt(errors / 256), Is.LessThanOrEqualTo(rmsBound * Math.Sqrt(squares / 256)), $"{type} block {b}");
        }
    }

    private static byte[] Quantize(GgmlType type, float[] values, int rows, int cols)
    {
        var bytes = new byte[GgmlTypeTraits.Find(type)!.RowBytes(cols) * rows];
        switch (type)
        {
            case GgmlType.Q4_K: GgmlBlockCodec.QuantizeRowQ4_K(values, MemoryMarshal.Cast<byte, BlockQ4_K>(bytes.AsSpan())); break;
            case GgmlType.Q6_K: GgmlBlockCodec.QuantizeRowQ6_K(values, MemoryMarshal.Cast<byte, BlockQ6_K>(bytes.AsSpan())); break;
            case GgmlType.Q5_0: GgmlBlockCodec.QuantizeRowQ5_0(values, MemoryMarshal.Cast<byte, BlockQ5_0>(bytes.AsSpan())); break;
            case GgmlType.Q8_0: GgmlBlockCodec.QuantizeRowQ8_0(values, MemoryMarshal.Cast<byte, BlockQ8_0>(bytes.AsSpan())); break;
            default: GgmlBlockCodec.QuantizeRowQ4_0(values, MemoryMarshal.Cast<byte, BlockQ4_0>(bytes.AsSpan())); break;
        }
        return bytes;
    }

    // Sub-block s of a Q6_K / Q4_K block: (step d · sc, the lowest and highest value its codes reach), from the block's bytes.
    private static (double Step, double Low, double High) SubBlockRange(GgmlType type, ReadOnlySpan<byte> block, int s)
    {
        if (type == GgmlType.Q6_K)
        {
            double step = (float)MemoryMarshal.Read<Half>(block[208..]) * (float)(sbyte)block[192 + s];
            return (Math.Abs(step), Math.Min(-32 * step, 31 * step), Math.Max(-32 * step, 31 * step));
        }
        float d = (float)MemoryMarshal.Read<Half>(block), dmin = (float)MemoryMarshal.Read<Half>(block[2..]);
        ReadOnlySpan<byte> scales = block.Slice(4, 12);
        (int sc, int m) = s < 4 ? (scales[s] & 63, scales[s + 4] & 63) : ((scales[s + 4] & 0xF) | (scales[s - 4] >> 6) << 4, (scales[s + 4] >> 4) | (scales[s] >> 6) << 4);
        double q4Step = (double)(d * sc), offset = dmin * m;
        return (q4Step, -offset, 15 * q4Step - offset);
    }

    private const int GaussianRowsFrom = 6;

    // Rows of different character: zero, constant, tiny (below ggml's group epsilon), huge, one outlier per block, all
    // positive, then Gaussian rows of growing amplitude.
    private static float[] Rows(Random random, out int rows, int cols)
    {
        rows = 14;
        var values = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = values.AsSpan(r * cols, cols);
            for (int c = 0; c < cols; c++)
            {
                double gaussian = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                row[c] = r switch
                {
                    0 => 0f,
                    1 => -0.75f,
                    2 => (float)(gaussian * 1e-17),
                    3 => (float)(gaussian * 1000),
                    4 => (float)(gaussian * 0.02 + (c % 256 == 17 ? 3 : 0)),
                    5 => (float)(Math.Abs(gaussian) * 0.1 + 0.5),
                    _ => (float)(gaussian * 0.01 * (r - GaussianRowsFrom + 1)),
                };
            }
        }
        return values;
    }
}
