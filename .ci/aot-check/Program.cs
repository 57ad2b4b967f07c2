// Runs one FP32 and one W4A8 matrix multiplication through the kernels of every catalog entry this CPU supports (the
// W4A8 one after preparing the weights, as model construction does) and checks them, so the AOT-compiled binary is
// exercised, not only compiled. Prints "aot-check: ok" on success.
using AgileQuant.Core.Quantization;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

var fp32 = new Fp32Matrix([1, 2, 3, 4, 5, 6], rows: 2, cols: 3); // (out, in)
float[] x = [1, 1, 1];                                             // (tokens, in)
var names = new List<string>();
foreach (KernelCatalogEntry entry in KernelCatalog.Entries.Where(e => e.IsSupported))
{
    KernelSet kernel = KernelSelector.Create(new KernelOptions { Preference = entry.Preference, Threads = 2 });
    float[] y = new float[2];                                      // (tokens, out)
    kernel.MatMul(fp32, x, y, tokens: 1);
    if (y[0] != 6 || y[1] != 15) { Console.Error.WriteLine($"aot-check: FP32 on {kernel.Name} gave {y[0]}, {y[1]}; expected 6, 15"); return 1; }
    // W = 0.5 · code, codes 1..3 and −1..−3: y = 3, −3 for x = 1 (x is 127 · 1/127 in 8 bits: up to float rounding)
    PackedInt4Matrix w4 = PackedInt4Matrix.FromSymmetricCodes([1, 2, 3, -1, -2, -3], [0.5f, 0.5f], rows: 2, cols: 3, groupSize: 32);
    kernel.Prepare(w4);
    kernel.MatMul(w4, x, y, tokens: 1);
    if (Math.Abs(y[0] - 3) > 1e-5 || Math.Abs(y[1] + 3) > 1e-5) { Console.Error.WriteLine($"aot-check: W4A8 on {kernel.Name} gave {y[0]}, {y[1]}; expected 3, -3"); return 1; }
    names.Add(kernel.Name);
}
QuantizationConfig config = QuantizationConfig.Parse("W4A8-GPTQ");
Console.WriteLine($"aot-check: ok ({string.Join(", ", names)} kernels, {config.Name} parsed)");
return 0;
