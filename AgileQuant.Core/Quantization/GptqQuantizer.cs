using System.Numerics.Tensors;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// GPTQ weight quantization (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
/// Pre-trained Transformers"; algorithm as described by IST-DASLab/gptq gptq.py <c>fasterquant</c>, commit
/// 9f2abd32533c83079847435a7c971bb4420285c8). Columns are quantized one at a time; the rounding error of
/// column i, <c>e = (w_i - ŵ_i) / U[i, i]</c>, is pushed onto the not-yet-quantized columns,
/// <c>w_j -= e · U[i, j]</c> (j > i), where <c>H⁻¹ = Uᵀ U</c> and <c>H = 2 XᵀX / n + λ I</c>,
/// <c>λ = DampeningFraction · mean(diag H)</c>. This greedily minimises <c>‖W Xᵀ − Ŵ Xᵀ‖²</c>.
/// </summary>
/// <remarks>
/// Choices, all in double precision:
/// <list type="bullet">
/// <item>Dead columns (<c>H[i, i] = 0</c>: the input channel was always 0) get <c>H[i, i] = 1</c> and weight 0, as in the reference.</item>
/// <item>Act-order permutes columns by descending <c>diag H</c> (stable: ties keep column order); codes are returned
/// in the original column order.</item>
/// <item>Group scales: with act-order or <see cref="QuantizerSettings.StaticGroups"/>, every (row, group) scale is fitted
/// once to the original weights of its contiguous original columns, before any error propagation (the reference's
/// <c>static_groups</c>), so the stored layout stays (rows, groups) of original columns. Otherwise a group's scale is
/// fitted when its first column is reached, to the weights as updated by all earlier columns. The reference reads
/// those weights from a copy refreshed only at block ends; we read the fully updated values (block boundaries are
/// aligned to groups so a group never straddles a block).</item>
/// <item>Per-row quantization fits each row's scale once to the original row (after dead columns are zeroed; the
/// reference fits before zeroing).</item>
/// <item>Symmetric codes are signed, <c>clamp(round(w/s), -2^(b-1), 2^(b-1)-1)</c>. The reference's symmetric mode
/// stores them offset by 2^(b-1) with <c>s = 2·max|w|/(2^b-1)</c>, which is <see cref="SymmetricScaleConvention.MaxAbsOverHalfRange"/>
/// here (except for rows without negative values, where the reference leaves <c>s = max(w)/(2^b-1)</c>).</item>
/// </list>
/// </remarks>
public static class GptqQuantizer
{
    // Rows quantized together, so each row of U read during the lazy update serves several weight rows.
    private const int RowTile = 8;

    /// <summary>
    /// Quantizes <paramref name="weight"/>, (rows, cols) row-major, using the calibration Hessian of the layer's inputs.
    /// </summary>
    /// <exception cref="NonFiniteValueException">A weight is NaN or ±Infinity.</exception>
    /// <exception cref="InvalidOperationException"><paramref name="hessian"/> holds no samples.</exception>
    /// <exception cref="AgileQuantException">The dampened Hessian is not positive definite.</exception>
    public static QuantizedMatrix Quantize(ReadOnlySpan<float> weight, int rows, int cols,
        HessianAccumulator hessian, QuantizerSettings settings)
    {
        ArgumentNullException.ThrowIfNull(hessian);
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        RoundToNearestQuantizer.ValidateShape(weight.Length, rows, cols, nameof(weight));
        if (hessian.Columns != cols)
            throw new ArgumentException($"hessian: expected {cols} columns to match the weight, found {hessian.Columns}", nameof(hessian));
        if (hessian.SampleCount == 0)
            throw new InvalidOperationException("the Hessian has no calibration samples; call HessianAccumulator.Add first");
        NonFiniteValueException.ThrowIfAny(weight, cols, nameof(weight));

        double[] h = hessian.ToMatrix(); // (cols, cols)
        var w = new double[rows * cols]; // (rows, cols), updated in place by error propagation
        TensorPrimitives.ConvertChecked<float, double>(weight, w);

        for (int i = 0; i < cols; i++)
        {
            if (h[i * cols + i] != 0) continue;
            h[i * cols + i] = 1;
            for (int r = 0; r < rows; r++) w[r * cols + i] = 0;
        }

        int groupSize = settings.EffectiveGroupSize(cols);
        int groups = (cols + groupSize - 1) / groupSize;
        bool staticGroups = settings.ActOrder || settings.StaticGroups || groups == 1;
        var parameters = new UniformQuantizationParameters[rows * groups]; // (rows, groups)
        if (staticGroups)
        {
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < groups; g++)
                    parameters[r * groups + g] = FitGroup(w.AsSpan(r * cols + g * groupSize, Math.Min(groupSize, cols - g * groupSize)), settings);
        }

        int[] order = ColumnOrder(h, cols, settings.ActOrder); // processing position -> original column
        if (settings.ActOrder)
        {
            h = PermuteSymmetric(h, cols, order);
            w = PermuteColumns(w, rows, cols, order);
        }

        double damp = 0;
        for (int i = 0; i < cols; i++) damp += h[i * cols + i];
        damp = settings.DampeningFraction * damp / cols;
        for (int i = 0; i < cols; i++) h[i * cols + i] += damp;
        if (!CholeskyFactorization.TryInverseUpperFactor(h, cols, out double[] u)) // (cols, cols), H⁻¹ = Uᵀ U
            throw new AgileQuantException($"GPTQ: the dampened {cols}x{cols} Hessian is not positive definite; raise DampeningFraction (now {settings.DampeningFraction})");

        int blockSize = staticGroups ? settings.BlockSize
            : groupSize >= settings.BlockSize ? groupSize : settings.BlockSize / groupSize * groupSize;
        var codes = new byte[rows * cols];          // (rows, cols), original column order
        var errors = new double[rows * blockSize];  // (rows, blockSize): e of each column of the current block

        // rows are independent given their group parameters; a tile of rows shares each streamed row of U
        int rowTiles = (rows + RowTile - 1) / RowTile;
        Parallel.For(0, rowTiles, tileIndex =>
        {
            int r0 = tileIndex * RowTile, r1 = Math.Min(r0 + RowTile, rows);
            for (int i1 = 0; i1 < cols; i1 += blockSize)
            {
                int i2 = Math.Min(i1 + blockSize, cols), count = i2 - i1;
                for (int r = r0; r < r1; r++)
                {
                    var row = w.AsSpan(r * cols, cols);
                    for (int i = i1; i < i2; i++)
                    {
                        int column = order[i];
                        int g = column / groupSize;
                        if (!staticGroups && i % groupSize == 0)
                            parameters[r * groups + g] = FitGroup(row.Slice(i, Math.Min(groupSize, cols - i)), settings);
                        var p = parameters[r * groups + g];
                        int q = p.Quantize(row[i]);
                        codes[r * cols + column] = unchecked((byte)q);
                        // e = (w_i - ŵ_i) / U[i, i];  w[i+1..i2) -= e · U[i, i+1..i2)
                        double e = (row[i] - p.Dequantize(q)) / u[i * cols + i];
                        errors[r * blockSize + (i - i1)] = e;
                        var rest = row.Slice(i + 1, i2 - i - 1);
                        TensorPrimitives.MultiplyAdd(u.AsSpan(i * cols + i + 1, i2 - i - 1), -e, rest, rest);
                    }
                }
                // lazy batch update: w[r, i2..) -= Σ_k e[r, k] · U[i1 + k, i2..)
                for (int k = 0; k < count; k++)
                {
                    var uRow = u.AsSpan((i1 + k) * cols + i2, cols - i2);
                    for (int r = r0; r < r1; r++)
                    {
                        var tail = w.AsSpan(r * cols + i2, cols - i2);
                        TensorPrimitives.MultiplyAdd(uRow, -errors[r * blockSize + k], tail, tail);
                    }
                }
            }
        });

        var scales = new float[rows * groups];                              // (rows, groups)
        byte[]? zeros = settings.Symmetric ? null : new byte[rows * groups]; // (rows, groups)
        for (int k = 0; k < parameters.Length; k++)
        {
            scales[k] = parameters[k].Scale;
            if (zeros is not null) zeros[k] = (byte)parameters[k].ZeroPoint;
        }
        return new QuantizedMatrix(rows, cols, settings.Bits, groupSize, settings.Symmetric, codes, scales, zeros);
    }

    private static UniformQuantizationParameters FitGroup(ReadOnlySpan<double> values, QuantizerSettings settings) =>
        UniformQuantizationParameters.Fit(values, settings);

    private static int[] ColumnOrder(double[] h, int cols, bool actOrder)
    {
        var order = new int[cols];
        for (int i = 0; i < cols; i++) order[i] = i;
        if (actOrder)
        {
            // descending diag H, ties by ascending column (stable)
            Array.Sort(order, (a, b) =>
            {
                int byDiag = h[b * cols + b].CompareTo(h[a * cols + a]);
                return byDiag != 0 ? byDiag : a.CompareTo(b);
            });
        }
        return order;
    }

    // P[i, j] = H[order[i], order[j]]
    private static double[] PermuteSymmetric(double[] h, int cols, int[] order)
    {
        var p = new double[cols * cols]; // (cols, cols)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
                p[i * cols + j] = h[order[i] * cols + order[j]];
        return p;
    }

    // P[r, i] = W[r, order[i]]
    private static double[] PermuteColumns(double[] w, int rows, int cols, int[] order)
    {
        var p = new double[rows * cols]; // (rows, cols)
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < cols; i++)
                p[r * cols + i] = w[r * cols + order[i]];
        return p;
    }
}
