namespace AgileQuant.Intrinsics;

/// <summary>Argument checks shared by every <see cref="IMatMulKernel.MatMul"/> implementation.</summary>
internal static class MatMulArguments
{
    /// <summary>
    /// Throws unless <paramref name="weights"/> is a <typeparamref name="TMatrix"/>, tokens ≥ 0,
    /// x holds at least (tokens, Cols) and y at least (tokens, Rows) elements.
    /// </summary>
    public static TMatrix Validate<TMatrix>(string kernelName, IWeightMatrix weights, int xLength, int yLength, int tokens)
        where TMatrix : class, IWeightMatrix
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights is not TMatrix matrix)
            throw new ArgumentException($"Kernel {kernelName} expected a {typeof(TMatrix).Name}, found {weights.GetType().Name}.", nameof(weights));
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        long xNeeded = (long)tokens * matrix.Cols, yNeeded = (long)tokens * matrix.Rows;
        if (xLength < xNeeded)
            throw new ArgumentException($"Expected x of at least {tokens}x{matrix.Cols} = {xNeeded} elements, found {xLength}.", "x");
        if (yLength < yNeeded)
            throw new ArgumentException($"Expected y of at least {tokens}x{matrix.Rows} = {yNeeded} elements, found {yLength}.", "y");
        return matrix;
    }
}
