using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Cli;

/// <summary>
/// A 64-bit digest of loaded weights that is the same on every instruction set: it reads each matrix through its
/// row-major view (<see cref="Int8RowMatrix.Codes"/>, <see cref="PackedInt4Matrix.Packed"/>, ...), not the kernel copy
/// the x86 kernels repack into. Loading is exact integer and float copying, so two loads of one file digest alike on
/// any machine; a weight that changed after it was read does not. An integrity check, not a cryptographic hash.
/// </summary>
internal sealed class WeightsDigest
{
    // xxHash64's primes: h ← rotl(h ⊕ w·P2, 31)·P1 per 64-bit word w
    private const ulong Prime1 = 11400714785074694791, Prime2 = 14029467366897019727, Prime3 = 1609587929392839161;

    private ulong _state = Prime3;

    /// <summary>The digest of every tensor of <paramref name="weights"/> in a fixed order, as 16 hex digits.</summary>
    public static string Of(TransformerWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var digest = new WeightsDigest();
        digest.Add(weights.TokenEmbeddingAsFloats()); // the values looked up, whichever form holds them
        digest.Add(weights.PositionEmbedding);
        digest.Add(weights.EmbeddingNorm);
        digest.Add(weights.ProjectIn);
        foreach (LayerWeights layer in weights.Layers)
        {
            digest.Add(layer.AttentionNorm);
            foreach (LinearLayer? linear in new[] { layer.Query, layer.Key, layer.Value, layer.Output, layer.Gate, layer.Up, layer.Down }) digest.Add(linear);
            digest.Add(layer.MlpNorm);
        }
        digest.Add(weights.FinalNorm);
        digest.Add(weights.ProjectOut);
        digest.Add(weights.LmHead);
        return digest._state.ToString("x16");
    }

    /// <summary>The digest of <paramref name="vectors"/>' float bits, in order, as 16 hex digits.</summary>
    public static string Of(IEnumerable<float[]> vectors)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        var digest = new WeightsDigest();
        foreach (float[] vector in vectors) digest.Add(vector);
        return digest._state.ToString("x16");
    }

    private void Add(NormLayer? norm)
    {
        Add(norm?.Weight);
        Add(norm?.Bias);
    }

    private void Add(LinearLayer? linear)
    {
        if (linear is null)
        {
            Mix(0);
            return;
        }
        IWeightMatrix w = linear.Weight;
        Mix((ulong)w.Rows << 32 | (uint)w.Cols);
        switch (w)
        {
            case Fp32Matrix m: Add(m.Data); break;
            case Int8RowMatrix m:
                Add(MemoryMarshal.AsBytes(m.Codes));
                Add(m.Scales);
                break;
            case PackedInt4Matrix m:
                Mix((ulong)m.GroupSize);
                Add(m.Packed);
                Add(m.Scales);
                Add(m.ZeroPoints);
                break;
            case GroupedInt8Matrix m:
                Mix((ulong)m.GroupSize);
                Add(MemoryMarshal.AsBytes(m.Codes));
                Add(m.Scales);
                Add(MemoryMarshal.AsBytes(m.SubScales));
                Add(m.Offsets);
                Add(MemoryMarshal.AsBytes(m.SubOffsets));
                break;
            case SuperBlockInt4Matrix m:
                // Every element's value, bit for bit: codes, sub-block and super-block scales all enter it.
                for (int r = 0; r < m.Rows; r++)
                    for (int c = 0; c < m.Cols; c++)
                        Mix(BitConverter.SingleToUInt32Bits(m.Dequantize(r, c)));
                break;
            default: throw new NotSupportedException($"no digest for weight format {w.GetType().Name}");
        }
        Add(linear.Bias);
    }

    private void Add(float[]? values)
    {
        if (values is null) Mix(0);
        else Add(values.AsSpan());
    }

    private void Add(ReadOnlySpan<float> values) => Add(MemoryMarshal.AsBytes(values));

    // the bytes as little-endian 64-bit words (the last one zero-padded), then their count
    private void Add(ReadOnlySpan<byte> bytes)
    {
        int whole = bytes.Length / sizeof(ulong) * sizeof(ulong);
        foreach (ulong word in MemoryMarshal.Cast<byte, ulong>(bytes[..whole])) Mix(BitConverter.IsLittleEndian ? word : BinaryPrimitives.ReverseEndianness(word));
        if (whole < bytes.Length)
        {
            Span<byte> tail = stackalloc byte[sizeof(ulong)];
            tail.Clear();
            bytes[whole..].CopyTo(tail);
            Mix(BinaryPrimitives.ReadUInt64LittleEndian(tail));
        }
        Mix((ulong)bytes.Length);
    }

    private void Mix(ulong word) => _state = BitOperations.RotateLeft(_state ^ word * Prime2, 31) * Prime1;
}
