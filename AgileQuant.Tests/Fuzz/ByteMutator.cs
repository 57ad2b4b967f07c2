using System.Buffers.Binary;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Format-blind mutations: bit flips, random and boundary bytes, 32/64-bit boundary integers written
/// over the input, truncation, growth, insertion, deletion and duplication of ranges. With
/// <see cref="HotPrefix"/> set, most edits land in the first bytes (e.g. a file header), where they matter.
/// </summary>
public sealed class ByteMutator : IFuzzMutator
{
    private static readonly byte[] BoundaryBytes = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0xC0, 0xED, (byte)'{', (byte)'}',
        (byte)'[', (byte)']', (byte)'"', (byte)',', (byte)':', (byte)'-', (byte)'9', (byte)'\\', (byte)' '];

    private static readonly ulong[] BoundaryIntegers = [0, 1, 7, 8, 9, 0x7F, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        0x1_0000_0000, 100_000_000, 100_000_001, long.MaxValue, 0x8000_0000_0000_0000, ulong.MaxValue];

    /// <summary>Creates the mutator; <paramref name="hotPrefix"/> returns how many leading bytes are "hot" for an input.</summary>
    public ByteMutator(Func<byte[], int>? hotPrefix = null) => HotPrefix = hotPrefix;

    /// <summary>Returns the length of the region most edits should hit (null: the whole input).</summary>
    public Func<byte[], int>? HotPrefix { get; }

    /// <inheritdoc/>
    public string Name => "bytes";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        var bytes = new List<byte>(input);
        int hot = Math.Clamp(HotPrefix?.Invoke(input) ?? input.Length, 0, input.Length);
        int Position(int extra = 0)
        {
            int limit = (hot > 0 && random.Next(4) != 0 ? hot : bytes.Count) + extra;
            return limit <= 0 ? 0 : random.Next(Math.Min(limit, bytes.Count + extra));
        }

        switch (random.Next(9))
        {
            case 0 when bytes.Count > 0:
                bytes[Position()] ^= (byte)(1 << random.Next(8));
                break;
            case 1 when bytes.Count > 0:
                bytes[Position()] = (byte)random.Next(256);
                break;
            case 2 when bytes.Count > 0:
                bytes[Position()] = BoundaryBytes[random.Next(BoundaryBytes.Length)];
                break;
            case 3:
            {
                ulong value = BoundaryIntegers[random.Next(BoundaryIntegers.Length)] + (ulong)(random.Next(3) - 1);
                Span<byte> encoded = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(encoded, value);
                int width = random.Next(2) == 0 ? 4 : 8;
                int at = random.Next(3) == 0 ? 0 : Position();
                for (int i = 0; i < width && at + i < bytes.Count; i++) bytes[at + i] = encoded[i];
                break;
            }
            case 4:
                int cut = Position(1);
                bytes.RemoveRange(cut, bytes.Count - cut);
                break;
            case 5:
                for (int i = random.Next(1, 64); i > 0; i--) bytes.Add(random.Next(2) == 0 ? (byte)0 : (byte)random.Next(256));
                break;
            case 6:
            {
                int at = Position(1);
                int count = random.Next(1, 16);
                for (int i = 0; i < count; i++) bytes.Insert(at, BoundaryBytes[random.Next(BoundaryBytes.Length)]);
                break;
            }
            case 7 when bytes.Count > 0:
            {
                int at = Position();
                bytes.RemoveRange(at, Math.Min(random.Next(1, 32), bytes.Count - at));
                break;
            }
            case 8 when bytes.Count > 0:
            {
                int from = Position();
                int count = Math.Min(random.Next(1, 64), bytes.Count - from);
                byte[] chunk = bytes.GetRange(from, count).ToArray();
                bytes.InsertRange(Position(1), chunk);
                break;
            }
            default:
                bytes.Add((byte)random.Next(256));
                break;
        }
        return bytes.ToArray();
    }
}
