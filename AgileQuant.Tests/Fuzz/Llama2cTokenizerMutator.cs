using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware llama2.c <c>tokenizer.bin</c> mutations. The file is int32 max_token_length, then per token
/// float32 score, int32 byte length, UTF-8 bytes. Mutations: max_token_length zero, negative, huge or below a
/// real length; a token length negative, huge, past the end or off by one; invalid UTF-8, lone surrogates and
/// byte-token look-alikes (<c>&lt;0xZZ&gt;</c>) as token text; NaN, infinite and floor scores; empty, duplicate
/// and removed tokens; a record cut in half at the end.
/// </summary>
public sealed class Llama2cTokenizerMutator : IFuzzMutator
{
    private static readonly int[] LengthLies = [-1, -2, int.MinValue, int.MaxValue, 0, 1 << 16, (1 << 16) + 1, 1 << 20, 255, 256];
    private static readonly byte[][] Pieces = [[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [],
        "<0xZZ>"u8.ToArray(), "<0x41>"u8.ToArray(), "<0x4"u8.ToArray(), " "u8.ToArray(), "  "u8.ToArray(), "\0"u8.ToArray(),
        "🙂"u8.ToArray(), [0xF0, 0x9F], "ab"u8.ToArray(), "a"u8.ToArray()];
    private static readonly float[] Scores = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -1e10f, -1e10f * 1.0000001f, 1e10f, 0f, -0f, float.MaxValue];

    /// <inheritdoc/>
    public string Name => "llama2c-tokenizer-structure";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        List<(float Score, byte[] Bytes)>? tokens = Parse(input, out int maxLength);
        if (tokens is null || tokens.Count == 0) return input;
        int pick = random.Next(tokens.Count);
        int? lengthLie = null;
        bool cutLast = false;
        switch (random.Next(9))
        {
            case 0:
                maxLength = random.Next(3) switch { 0 => LengthLies[random.Next(LengthLies.Length)], 1 => maxLength - 1, _ => 1 };
                break;
            case 1 or 2:
                lengthLie = random.Next(3) switch
                {
                    0 => LengthLies[random.Next(LengthLies.Length)],
                    1 => tokens[pick].Bytes.Length + (random.Next(2) == 0 ? 1 : -1),
                    _ => input.Length,
                };
                break;
            case 3 or 4:
                tokens[pick] = (tokens[pick].Score, random.Next(3) == 0 ? [.. tokens[pick].Bytes, .. Pieces[random.Next(Pieces.Length)]] : Pieces[random.Next(Pieces.Length)]);
                maxLength = Math.Max(maxLength, tokens[pick].Bytes.Length);
                break;
            case 5:
                tokens[pick] = (Scores[random.Next(Scores.Length)], tokens[pick].Bytes);
                break;
            case 6:
                if (random.Next(2) == 0) tokens.RemoveAt(pick);
                else tokens.Insert(random.Next(tokens.Count + 1), tokens[pick]);
                break;
            case 7:
                cutLast = true;
                break;
            default:
                (tokens[pick], tokens[^1]) = (tokens[^1], tokens[pick]);
                break;
        }

        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write(maxLength);
        for (int i = 0; i < tokens.Count; i++)
        {
            writer.Write(tokens[i].Score);
            writer.Write(i == pick && lengthLie is int lie ? lie : tokens[i].Bytes.Length);
            writer.Write(tokens[i].Bytes);
        }
        writer.Flush();
        byte[] result = stream.ToArray();
        return cutLast ? result[..Math.Max(4, result.Length - random.Next(1, 9))] : result;
    }

    private static List<(float, byte[])>? Parse(byte[] input, out int maxLength)
    {
        maxLength = input.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(input) : 0;
        var tokens = new List<(float, byte[])>();
        for (int offset = 4; offset < input.Length;)
        {
            if (input.Length - offset < 8) return null;
            float score = BinaryPrimitives.ReadSingleLittleEndian(input.AsSpan(offset));
            int length = BinaryPrimitives.ReadInt32LittleEndian(input.AsSpan(offset + 4));
            offset += 8;
            if (length < 0 || length > input.Length - offset) return null;
            tokens.Add((score, input[offset..(offset + length)]));
            offset += length;
        }
        return tokens;
    }

    /// <summary>A small valid tokenizer: 3 specials, the 256 byte tokens, then <paramref name="merges"/> (score = −index).</summary>
    public static byte[] Build(params string[] merges)
    {
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write(Math.Max(6, merges.Select(m => Encoding.UTF8.GetByteCount(m)).DefaultIfEmpty(0).Max()));
        void Token(float score, string text)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            writer.Write(score);
            writer.Write(bytes.Length);
            writer.Write(bytes);
        }
        Token(0, "<unk>");
        Token(0, "\n<s>\n");
        Token(0, "\n</s>\n");
        for (int b = 0; b < 256; b++) Token(0, $"<0x{b:X2}>");
        for (int i = 0; i < merges.Length; i++) Token(-i, merges[i]);
        writer.Flush();
        return stream.ToArray();
    }
}
