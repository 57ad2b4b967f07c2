using System.Text;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware mutations of protobuf wire-format messages (SentencePiece <c>ModelProto</c>): parses the input into
/// fields, nested messages included, then at a random field writes boundary varints (0, 2^31, 2^64 − 1, −1 as a
/// 10-byte varint), NaN or infinite floats, a length prefix that lies (past the end, 2^63), another wire type or
/// field number, invalid UTF-8, empty or huge strings, thousands of copies of one field, or deeply nested groups;
/// deletes, duplicates or swaps fields. Lengths of enclosing messages are re-encoded unless the mutation is the lie.
/// Inputs that do not parse are returned unchanged (stack it with <see cref="ByteMutator"/> for those).
/// </summary>
public sealed class ProtobufFieldMutator : IFuzzMutator
{
    private static readonly ulong[] BoundaryVarints = [0, 1, 2, 3, 4, 5, 6, 7, 127, 128, 255, 256, 0x7FFF_FFFF, 0x8000_0000,
        0xFFFF_FFFF, 0x1_0000_0000, long.MaxValue, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 1 /* -2 */];
    private static readonly float[] SpecialFloats = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue, -0f, float.Epsilon, 1e30f];
    private static readonly string[] Pieces = ["", "\u2581", "<0x41>", "<0xFF>", "<0x100>", "<0xZZ>", "<0x>", "<unk>", "<s>", "</s>", "a", "ab", "\u2581\u2581\u2581",
        "\uD83D\uDE01", "\0", "\u2581a\u2581b"];
    private static readonly byte[][] InvalidUtf8 = [[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xC0, 0xAF]];

    /// <summary>One field; <see cref="Children"/> is set when a length-delimited payload parses as a message.</summary>
    private sealed class Field
    {
        public ulong Number;
        public int Wire;
        public ulong Scalar;                // varint, fixed64 or fixed32 value
        public byte[] Payload = [];         // length-delimited bytes when Children is null
        public List<Field>? Children;
        public ulong? LyingLength;          // written instead of the payload's real length
        public byte[]? Raw;                 // written verbatim instead of the field

        public Field Clone() => new()
        {
            Number = Number, Wire = Wire, Scalar = Scalar, Payload = Payload, LyingLength = LyingLength, Raw = Raw,
            Children = Children?.Select(c => c.Clone()).ToList(),
        };
    }

    /// <inheritdoc/>
    public string Name => "protobuf-fields";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        List<Field>? root = Parse(input, 0);
        if (root is null) return input;
        // Every field with the list that holds it, nested ones included.
        var all = new List<(List<Field> Siblings, int Index)>();
        void Collect(List<Field> fields)
        {
            for (int i = 0; i < fields.Count; i++)
            {
                all.Add((fields, i));
                if (fields[i].Children is { } children) Collect(children);
            }
        }
        Collect(root);
        if (all.Count == 0) return [.. input, .. Key(1, 2), 0];
        (List<Field> siblings, int index) = all[random.Next(all.Count)];
        Field field = siblings[index];
        switch (random.Next(13))
        {
            case 0 or 1:
                field.Wire = 0;
                field.Children = null;
                field.Scalar = BoundaryVarints[random.Next(BoundaryVarints.Length)];
                break;
            case 2:
                field.Wire = 5;
                field.Children = null;
                field.Scalar = BitConverter.SingleToUInt32Bits(SpecialFloats[random.Next(SpecialFloats.Length)]);
                break;
            case 3 when field.Wire == 2:
            {
                int real = field.Children is null ? field.Payload.Length : Write(field.Children).Length;
                ulong[] lies = [(ulong)real + 1, (ulong)real + (ulong)random.Next(2, 4096), (ulong)Math.Max(0, real - 1), 0, 0x7FFF_FFFF, 0x8000_0000, long.MaxValue, ulong.MaxValue];
                field.LyingLength = lies[random.Next(lies.Length)];
                break;
            }
            case 4:
                field.Wire = random.Next(8);
                break;
            case 5:
            {
                ulong[] numbers = [0, 1, 2, 3, 4, 5, 40, 41, 42, 35, 536_870_911, 536_870_912, (ulong)random.Next(1, 100)];
                field.Number = numbers[random.Next(numbers.Length)];
                break;
            }
            case 6:
                siblings.RemoveAt(index);
                break;
            case 7:
                siblings.Insert(index, field.Clone());
                break;
            case 8:
            {
                field.Wire = 2;
                field.Children = null;
                field.LyingLength = null;
                byte[] text = random.Next(3) switch
                {
                    0 => InvalidUtf8[random.Next(InvalidUtf8.Length)],
                    1 => Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(Pieces[random.Next(Pieces.Length)], random.Next(1, random.Next(16) == 0 ? 20_000 : 8)))),
                    _ => Encoding.UTF8.GetBytes(Pieces[random.Next(Pieces.Length)]),
                };
                field.Payload = random.Next(3) == 0 ? [.. field.Payload, .. text] : text;
                break;
            }
            case 9:
            {
                // A huge vocabulary: thousands of copies of one field (a piece, or a trainer/normalizer spec).
                int copies = random.Next(8) == 0 ? random.Next(5_000, 20_000) : random.Next(10, 1_000);
                siblings.InsertRange(index, Enumerable.Range(0, copies).Select(_ => field.Clone()));
                break;
            }
            case 10:
            {
                // Deeply nested groups (wire types 3 and 4), or a nested message chain inside a length-delimited field.
                int depth = random.Next(2) == 0 ? random.Next(2, 100) : random.Next(100, 5_000);
                var raw = new List<byte>();
                for (int i = 0; i < depth; i++) raw.AddRange(Key(field.Number, 3));
                if (random.Next(2) == 0) for (int i = 0; i < depth; i++) raw.AddRange(Key(field.Number, 4));
                field.Raw = [.. raw];
                break;
            }
            case 11 when siblings.Count > 1:
            {
                int other = random.Next(siblings.Count);
                (siblings[index], siblings[other]) = (siblings[other], siblings[index]);
                break;
            }
            default:
                // A negative int32 written as the 10-byte varint protobuf uses for it.
                field.Wire = 0;
                field.Children = null;
                field.Scalar = unchecked((ulong)(long)-random.Next(1, 3));
                break;
        }
        return Write(root);
    }

    private static List<Field>? Parse(ReadOnlySpan<byte> data, int depth)
    {
        var fields = new List<Field>();
        int position = 0;
        while (position < data.Length)
        {
            if (!TryVarint(data, ref position, out ulong key) || key >> 3 == 0) return null;
            var field = new Field { Number = key >> 3, Wire = (int)(key & 7) };
            switch (field.Wire)
            {
                case 0:
                    if (!TryVarint(data, ref position, out field.Scalar)) return null;
                    break;
                case 1:
                    if (data.Length - position < 8) return null;
                    field.Scalar = BitConverter.ToUInt64(data.Slice(position, 8));
                    position += 8;
                    break;
                case 5:
                    if (data.Length - position < 4) return null;
                    field.Scalar = BitConverter.ToUInt32(data.Slice(position, 4));
                    position += 4;
                    break;
                case 2:
                    if (!TryVarint(data, ref position, out ulong length) || length > (ulong)(data.Length - position)) return null;
                    field.Payload = data.Slice(position, (int)length).ToArray();
                    position += (int)length;
                    if (depth < 3 && field.Payload.Length > 0 && Parse(field.Payload, depth + 1) is { } children) field.Children = children;
                    break;
                default:
                    return null;
            }
            fields.Add(field);
        }
        return fields;
    }

    private static bool TryVarint(ReadOnlySpan<byte> data, ref int position, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64 && position < data.Length; shift += 7)
        {
            byte b = data[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return true;
        }
        return false;
    }

    private static byte[] Write(List<Field> fields)
    {
        var output = new MemoryStream();
        Write(fields, output);
        return output.ToArray();
    }

    private static void Write(List<Field> fields, MemoryStream output)
    {
        Span<byte> scratch = stackalloc byte[10];
        foreach (Field field in fields)
        {
            if (field.Raw is not null)
            {
                output.Write(field.Raw);
                continue;
            }
            output.Write(scratch[..Varint((field.Number << 3) | (uint)field.Wire, scratch)]);
            switch (field.Wire)
            {
                case 0: output.Write(scratch[..Varint(field.Scalar, scratch)]); break;
                case 1: output.Write(BitConverter.GetBytes(field.Scalar)); break;
                case 5: output.Write(BitConverter.GetBytes((uint)field.Scalar)); break;
                case 2:
                    byte[] payload = field.Children is null ? field.Payload : Write(field.Children);
                    output.Write(scratch[..Varint(field.LyingLength ?? (ulong)payload.Length, scratch)]);
                    output.Write(payload);
                    break;
            }
        }
    }

    private static int Varint(ulong value, Span<byte> destination)
    {
        int length = 0;
        while (value >= 0x80)
        {
            destination[length++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[length++] = (byte)value;
        return length;
    }

    private static byte[] Key(ulong number, int wire) => Varint((number << 3) | (uint)wire);

    /// <summary>Protobuf base-128 varint of <paramref name="value"/>.</summary>
    public static byte[] Varint(ulong value)
    {
        var bytes = new List<byte>();
        while (value >= 0x80)
        {
            bytes.Add((byte)(value | 0x80));
            value >>= 7;
        }
        bytes.Add((byte)value);
        return [.. bytes];
    }
}
