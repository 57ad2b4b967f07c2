using System.Buffers.Binary;
using System.Numerics;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware llama2.c checkpoint mutations: lies in the 7-int32 header (dim, hidden_dim, n_layers,
/// n_heads, n_kv_heads, vocab_size, seq_len) — zero, negative, huge, int.MinValue, sign-flipped vocab
/// (shared versus separate classifier), doubled or off-by-one values; "consistent" lies where the file is
/// resized to the size the new header implies (so the reader gets past its size check); headers whose
/// 64-bit size product wraps around; truncation and growth by one tensor row; NaN and infinity in the weights.
/// </summary>
public sealed class Llama2cCheckpointMutator : IFuzzMutator
{
    private const int HeaderBytes = 28;
    private const long MaxResizedBytes = 1 << 16;
    private static readonly int[] Lies = [0, -1, 1, 2, 3, 4, 7, 8, 16, 1 << 15, 1 << 16, 43690, 1 << 29, 1 << 30, int.MaxValue, int.MinValue, -8];

    /// <inheritdoc/>
    public string Name => "llama2c-structure";

    /// <summary>Bytes a header describes, computed exactly (no wrap-around), as llama2.c's export writes them; null if the header is not even plausible.</summary>
    public static BigInteger? DescribedBytes(ReadOnlySpan<int> h)
    {
        if (h[0] <= 0 || h[3] <= 0 || h[4] <= 0 || h[0] % h[3] != 0) return null;
        BigInteger dim = h[0], hidden = h[1], layers = h[2], heads = h[3], vocab = BigInteger.Abs(h[5]), seq = h[6];
        BigInteger headSize = dim / heads, kvDim = headSize * h[4];
        BigInteger floats = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * hidden * dim)
            + dim + 2 * seq * (headSize / 2) + (h[5] > 0 ? 0 : vocab * dim);
        return HeaderBytes + floats * 4;
    }

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        if (input.Length < HeaderBytes) return input;
        byte[] bytes = (byte[])input.Clone();
        Span<int> header = stackalloc int[7];
        for (int i = 0; i < 7; i++) header[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(i * 4));
        int field = random.Next(7);
        switch (random.Next(8))
        {
            case 0 or 1:
                header[field] = Lies[random.Next(Lies.Length)];
                return WithHeader(bytes, header);
            case 2:
                header[5] = unchecked(-header[5]); // shared <-> separate classifier, file size unchanged
                return WithHeader(bytes, header);
            case 3:
            {
                // A different but self-consistent header: resize the file to what it describes.
                header[field] = random.Next(4) switch
                {
                    0 => unchecked(header[field] * 2),
                    1 => unchecked(header[field] + (random.Next(2) == 0 ? 1 : -1)),
                    2 => header[field] / 2,
                    _ => random.Next(1, 33),
                };
                if (random.Next(3) == 0) header[4] = header[3]; // keep n_kv_heads legal more often
                return Resized(WithHeader(bytes, header), DescribedBytes(header), random);
            }
            case 4:
                return WrappingHeader(bytes, random);
            case 5:
            {
                int row = (int)Math.Min(1 << 16, Math.Max(1, Math.Abs((long)header[0])) * 4);
                int change = random.Next(3) switch { 0 => row, 1 => random.Next(1, 5), _ => (int)Math.Min(1 << 16, row * Math.Max(1, Math.Abs((long)header[5]))) };
                return random.Next(2) == 0 ? bytes[..Math.Max(0, bytes.Length - change)] : [.. bytes, .. new byte[Math.Min(change, 1 << 16)]];
            }
            case 6 when bytes.Length > HeaderBytes + 4:
            {
                float[] specials = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon, -0f];
                int at = HeaderBytes + random.Next((bytes.Length - HeaderBytes) / 4) * 4;
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(at), specials[random.Next(specials.Length)]);
                return bytes;
            }
            default:
                header[field] = unchecked(header[field] + random.Next(-2, 3));
                return WithHeader(bytes, header);
        }
    }

    private static byte[] WithHeader(byte[] bytes, ReadOnlySpan<int> header)
    {
        for (int i = 0; i < 7; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), header[i]);
        return bytes;
    }

    private static byte[] Resized(byte[] bytes, BigInteger? described, Random random)
    {
        if (described is not BigInteger size || size < HeaderBytes || size > MaxResizedBytes) return bytes;
        var resized = new byte[(int)size];
        bytes.AsSpan(0, Math.Min(bytes.Length, resized.Length)).CopyTo(resized);
        for (int i = bytes.Length; i + 4 <= resized.Length; i += 4)
            BinaryPrimitives.WriteSingleLittleEndian(resized.AsSpan(i), (float)(random.NextDouble() - 0.5));
        return resized;
    }

    /// <summary>
    /// A header whose size, computed in wrapping 64-bit arithmetic, equals 28 + 8·seq_len although the exact size is
    /// about 2^65 bytes: dim 2^15, n_heads = n_kv_heads 2^14, hidden 43690 (3·hidden + 2 ≡ 0 mod 2^17), n_layers 2^30.
    /// </summary>
    public static byte[] WrappingHeader(byte[] bytes, Random random)
    {
        int seq = random.Next(1, 9);
        int vocab = random.Next(2) == 0 ? 1 : -1;
        ReadOnlySpan<int> header = [1 << 15, 43690, 1 << 30, 1 << 14, 1 << 14, vocab, seq];
        long wrapped = unchecked(28 + 4 * ((long)Math.Abs(vocab) * (1 << 15) * (vocab > 0 ? 1 : 2) + (1 << 15))) + 8L * seq;
        var file = new byte[wrapped];
        bytes.AsSpan(HeaderBytes, Math.Min(bytes.Length, file.Length) - HeaderBytes).CopyTo(file.AsSpan(HeaderBytes));
        return WithHeader(file, header);
    }
}
