namespace AgileQuant.Tests.Core.Quantization;

/// <summary>Deterministic random fixtures for the quantization tests.</summary>
internal static class QuantizationTestData
{
    /// <summary>Standard normal samples (Box–Muller) from a fixed seed.</summary>
    public static float[] Gaussian(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var result = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            result[i] = scale * (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return result;
    }

    /// <summary>C = A · B with A (m, k), B (k, n), row-major.</summary>
    public static float[] MatMul(float[] a, float[] b, int m, int k, int n)
    {
        var c = new float[m * n]; // (m, n)
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                float aip = a[i * k + p];
                for (int j = 0; j < n; j++) c[i * n + j] += aip * b[p * n + j];
            }
        return c;
    }

    /// <summary>‖W Xᵀ − Ŵ Xᵀ‖_F: layer output error of Ŵ on inputs X (n, cols); W, Ŵ are (rows, cols).</summary>
    public static double OutputError(float[] w, float[] wHat, float[] x, int rows, int cols, int n)
    {
        double sum = 0;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++)
            {
                double dot = 0;
                for (int c = 0; c < cols; c++) dot += (double)x[t * cols + c] * (w[r * cols + c] - wHat[r * cols + c]);
                sum += dot * dot;
            }
        return Math.Sqrt(sum);
    }
}
