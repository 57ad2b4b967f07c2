using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// The tokenizer of karpathy/llama2.c, loaded from its <c>tokenizer.bin</c> (int32 max_token_length, then
/// per token: float32 score, int32 byte length, UTF-8 bytes). Encoding reproduces <c>encode()</c> in
/// llama2.c <c>run.c</c>: optional BOS, a dummy-prefix <c>" "</c> token when the text is non-empty, one token
/// per codepoint (or byte-fallback ids <c>byte + 3</c>), then highest-score merges; decoding reproduces
/// <c>decode()</c> (raw bytes for <c>&lt;0xNN&gt;</c>, no leading space after BOS).
/// </summary>
public sealed class Llama2cTokenizer : ScoredMergeTokenizer
{
    private const int FirstByteTokenId = 3;
    internal const int MinVocabSize = FirstByteTokenId + 256;
    private const int MaxTokenLengthCap = 1 << 16;
    private const int MaxVocabSizeCap = 1 << 24;
    private const long MaxFileBytes = 1L << 30;
    // llama2.c starts its best-score search at -1e10 with a strict '>': lower scores never merge.
    private const float NoMergeScore = -1e10f;

    private Llama2cTokenizer(ScoredVocabulary vocabulary, bool addBos) : base(vocabulary, addBos) { }

    /// <summary>
    /// Loads a llama2.c <c>tokenizer.bin</c>, reading tokens until the end of the file.
    /// </summary>
    /// <param name="path">The tokenizer file.</param>
    /// <param name="addBos">Whether encoding prepends the BOS token (llama2.c does for prompts).</param>
    /// <exception cref="ModelFormatException">The file is truncated, a length is negative or exceeds
    /// max_token_length, a score is NaN, or there are fewer than 259 tokens (3 specials + 256 bytes).</exception>
    public static Llama2cTokenizer Load(string path, bool addBos = true) => LoadCore(path, null, addBos);

    /// <summary>
    /// Loads a llama2.c <c>tokenizer.bin</c> that must hold exactly <paramref name="expectedVocabSize"/>
    /// tokens (the checkpoint's vocab_size; the file itself does not store the count).
    /// </summary>
    /// <param name="path">The tokenizer file.</param>
    /// <param name="expectedVocabSize">The number of tokens the file must contain.</param>
    /// <param name="addBos">Whether encoding prepends the BOS token.</param>
    /// <exception cref="ModelFormatException">As <see cref="Load(string, bool)"/>, and when the file holds
    /// fewer tokens or has bytes left after the last expected token.</exception>
    public static Llama2cTokenizer Load(string path, int expectedVocabSize, bool addBos = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(expectedVocabSize, MinVocabSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(expectedVocabSize, MaxVocabSizeCap);
        return LoadCore(path, expectedVocabSize, addBos);
    }

    private static Llama2cTokenizer LoadCore(string path, int? expectedVocabSize, bool addBos)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a llama2.c tokenizer file, found no file");
        byte[] data = GuardedFile.ReadAllBytes(path, MaxFileBytes);
        (string[] pieces, byte[][] bytes, float[] scores) = Parse(path, data, expectedVocabSize);
        bytes[1] = bytes[2] = []; // BOS and EOS print nothing
        int[] byteTokenIds = Enumerable.Range(FirstByteTokenId, 256).ToArray();
        var vocabulary = new ScoredVocabulary(pieces, bytes, scores, Matchable: Enumerable.Repeat(true, pieces.Length).ToArray(),
            byteTokenIds, SpaceSymbol: ' ', AddSpacePrefix: true, StripSpaceAtStart: false, NoMergeScore, BosId: 1, EosId: 2);
        return new Llama2cTokenizer(vocabulary, addBos);
    }

    private static (string[] Pieces, byte[][] DecodedBytes, float[] Scores) Parse(string path, ReadOnlySpan<byte> data, int? expectedVocabSize)
    {
        if (data.Length < 4)
            throw new ModelFormatException(path, null, $"expected at least 4 bytes (int32 max_token_length), found {data.Length}");
        int maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxTokenLength <= 0 || maxTokenLength > MaxTokenLengthCap)
            throw new ModelFormatException(path, null, $"expected max_token_length in 1..{MaxTokenLengthCap}, found {maxTokenLength}");

        var pieces = new List<string>(expectedVocabSize ?? 32000);
        var decoded = new List<byte[]>(pieces.Capacity);
        var scores = new List<float>(pieces.Capacity);
        var strictUtf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        int offset = 4;
        while (expectedVocabSize is int expected ? pieces.Count < expected : offset < data.Length)
        {
            int index = pieces.Count;
            if (index >= MaxVocabSizeCap)
                throw new ModelFormatException(path, null, $"expected at most {MaxVocabSizeCap} tokens, found more");
            int remaining = data.Length - offset;
            if (remaining < 8)
                throw new ModelFormatException(path, null,
                    $"token {index}: expected 8 bytes (float32 score, int32 length) at offset {offset}, found {remaining} (file truncated)");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data[offset..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(data[(offset + 4)..]);
            offset += 8;
            if (float.IsNaN(score))
                throw new ModelFormatException(path, null, $"token {index}: expected a finite score, found NaN");
            if (length < 0 || length > maxTokenLength)
                throw new ModelFormatException(path, null,
                    $"token {index}: expected a byte length in 0..{maxTokenLength} (max_token_length), found {length}");
            if (data.Length - offset < length)
                throw new ModelFormatException(path, null,
                    $"token {index}: expected {length} bytes at offset {offset}, found {data.Length - offset} (file truncated)");
            ReadOnlySpan<byte> raw = data.Slice(offset, length);
            offset += length;

            string piece;
            try { piece = strictUtf8.GetString(raw); }
            catch (DecoderFallbackException)
            {
                // Not valid UTF-8: it can never match text, but it still decodes to its raw bytes.
                piece = Encoding.UTF8.GetString(raw);
            }
            pieces.Add(piece);
            decoded.Add(ByteTokenValue(piece) is byte b ? [b] : raw.ToArray());
            scores.Add(score);
        }
        if (offset != data.Length)
            throw new ModelFormatException(path, null,
                $"expected {expectedVocabSize} tokens ending at byte {offset}, found {data.Length - offset} further bytes (vocab size mismatch)");
        if (pieces.Count < MinVocabSize)
            throw new ModelFormatException(path, null,
                $"expected at least {MinVocabSize} tokens (3 specials + 256 byte tokens), found {pieces.Count}");
        return (pieces.ToArray(), decoded.ToArray(), scores.ToArray());
    }
}
