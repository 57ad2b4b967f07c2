using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The three LLaMA-7B layer shapes in full (4096×4096, 11008×4096, 4096×11008), one token (GEMV) and 9 tokens (GEMM
/// with a short last tile), every SIMD integer kernel supported here at 2 threads against the scalar twin computed
/// once per shape: int32 accumulation is exact on both sides, so only the float epilogue's order may differ
/// (tolerance 1e-6 · n relative to the output's scale, n = input columns).
/// </summary>
public sealed class LlamaShapeKernelTests
{
    private static readonly (int Rows, int Cols)[] LlamaShapes = [(4096, 4096), (11008, 4096), (4096, 11008)];

    private static IEnumerable<TestCaseData> Shapes() =>
        LlamaShapes.Select(s => new TestCaseData(s.Rows, s.Cols).SetArgDisplayNames($"{s.Rows}x{s.Cols}"));

    [TestCaseSource(nameof(Shapes))]
    public void Int4KernelsEqualScalarOnLlamaShape(int rows, int cols)
    {
        IMatMulKernel[] kernels = [.. CatalogKernels.Simd(CatalogKernels.Int4, 8, threads: 2)];
        if (kernels.Length == 0) Assert.Ignore("No SIMD int4 kernel is enabled on this machine; the scalar kernel is the reference itself.");
        PackedInt4Matrix w = QuantizedKernelTests.Int4Weights(rows, cols, groupSize: 128, asymmetric: true, seed: rows + cols);
        AssertKernelsMatchScalar(new ScalarInt4Kernel(8), w, kernels);
    }

    [TestCaseSource(nameof(Shapes))]
    public void Int8KernelsEqualScalarOnLlamaShape(int rows, int cols)
    {
        IMatMulKernel[] kernels = [.. CatalogKernels.Simd(CatalogKernels.Int8, 8, threads: 2)];
        if (kernels.Length == 0) Assert.Ignore("No SIMD int8 kernel is enabled on this machine; the scalar kernel is the reference itself.");
        Int8RowMatrix w = QuantizedKernelTests.Int8Weights(rows, cols, seed: rows + cols);
        AssertKernelsMatchScalar(new ScalarInt8Kernel(8), w, kernels);
    }

    private static void AssertKernelsMatchScalar(IMatMulKernel scalar, IWeightMatrix w, IMatMulKernel[] kernels)
    {
        foreach (int tokens in new[] { 1, 9 })
        {
            float[] x = MatMulReference.RandomValues(tokens * w.Cols, seed: tokens);
            var expected = new float[tokens * w.Rows];
            scalar.MatMul(w, x, expected, tokens);
            double scale = Math.Sqrt(expected.Average(v => (double)v * v));
            double[] tolerance = expected.Select(v => 1e-6 * w.Cols * (Math.Abs(v) + scale)).ToArray();
            foreach (IMatMulKernel kernel in kernels)
            {
                var output = new GuardedBuffer(tokens * w.Rows, sentinel: -9876.5f, fill: float.NaN);
                kernel.MatMul(w, x, output.Inner, tokens);
                string what = $"{kernel.Name} (tokens {tokens}, {w.Rows}x{w.Cols})";
                output.AssertMarginsIntact(what);
                MatMulReference.AssertClose(output.Inner, expected, tolerance, what);
            }
        }
    }
}
