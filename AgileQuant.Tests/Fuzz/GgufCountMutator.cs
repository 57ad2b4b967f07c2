using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Structure-aware GGUF mutations of the counts and sizes the metadata declares (issue 23: <c>block_count</c> 2^31 − 1
/// sized an array before the tensors were checked): finds a <c>llama.*</c> count key in the file and sets its UINT32
/// value to a boundary — 0, 1, 2, 2^16, 2^24, 2^28, 10^9, 2^31 − 1, 2^32 − 1 — or to the value of another count key.
/// Byte-level mutations almost never land exactly on such a value, so this reaches the config checks directly.
/// </summary>
public sealed class GgufCountMutator : IFuzzMutator
{
    private static readonly string[] Keys =
    [
        "llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.vocab_size", "llama.rope.dimension_count",
    ];

    private static readonly uint[] Lies = [0, 1, 2, 3, 1 << 16, 1 << 24, 1 << 28, 1_000_000_000, int.MaxValue, uint.MaxValue];

    private const uint Uint32Type = 4; // GGUF_TYPE_UINT32

    /// <inheritdoc/>
    public string Name => "gguf-counts";

    /// <inheritdoc/>
    public byte[] Mutate(byte[] input, Random random)
    {
        byte[] bytes = (byte[])input.Clone();
        var found = new List<int>(); // offsets of UINT32 values that follow a count key
        foreach (string key in Keys)
        {
            int at = bytes.AsSpan().IndexOf(Encoding.ASCII.GetBytes(key));
            int type = at + key.Length, value = type + 4;
            // The key's length prefix (uint64) must say exactly this key, and its value must be a UINT32.
            if (at < 8 || value + 4 > bytes.Length || BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at - 8)) != (ulong)key.Length) continue;
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(type)) == Uint32Type) found.Add(value);
        }
        if (found.Count == 0) return bytes;
        int target = found[random.Next(found.Count)];
        uint lie = random.Next(4) == 0
            ? BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(found[random.Next(found.Count)]))
            : Lies[random.Next(Lies.Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(target), lie);
        return bytes;
    }
}
