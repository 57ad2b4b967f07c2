using AgileQuant.Models.Tokenizers;
using TokenType = AgileQuant.Models.Tokenizers.SpmVocabularyTokenizer.TokenType;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// A SentencePiece vocabulary as GGUF stores it under <c>tokenizer.ggml.*</c> with model <c>llama</c>
/// (llama.cpp's SPM vocabulary): one piece, score and <see cref="TokenType"/> per token id.
/// </summary>
/// <param name="Tokens">(V,) pieces; a space is spelled <c>▁</c>, byte tokens <c>&lt;0xNN&gt;</c>.</param>
/// <param name="Scores">(V,) merge scores.</param>
/// <param name="TokenTypes">(V,) <see cref="TokenType"/> codes.</param>
/// <param name="BosId">Beginning-of-sequence token.</param>
/// <param name="EosId">End-of-sequence token.</param>
/// <param name="UnknownId">Unknown token.</param>
public sealed record GgufVocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<float> Scores, IReadOnlyList<int> TokenTypes, int BosId, int EosId, int UnknownId)
{
    /// <summary>
    /// The vocabulary of a scored-merge tokenizer (llama2.c <c>tokenizer.bin</c>, SentencePiece <c>.model</c>, GGUF):
    /// llama2.c's spaces become <c>▁</c>, <c>&lt;0xNN&gt;</c> pieces become byte tokens, BOS and EOS control tokens, the unknown id (0) the unknown token;
    /// padded with unused <c>[PADn]</c> tokens up to <paramref name="vocabSize"/> (llama.cpp needs one token per embedding row).
    /// </summary>
    public static GgufVocabulary FromTokenizer(ScoredMergeTokenizer tokenizer, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, tokenizer.VocabSize);
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            if (id >= tokenizer.VocabSize)
            {
                (tokens[id], scores[id], types[id]) = ($"[PAD{id}]", -1e9f, (int)TokenType.Unused);
                continue;
            }
            // llama2.c's export wrote SentencePiece's ▁ as a plain space; GGUF keeps ▁.
            string piece = tokenizer is Llama2cTokenizer ? tokenizer.GetPiece(id).Replace(' ', '\u2581') : tokenizer.GetPiece(id);
            tokens[id] = piece;
            scores[id] = tokenizer.GetScore(id);
            types[id] = (int)(id == tokenizer.BosId || id == tokenizer.EosId ? TokenType.Control
                : id == 0 && piece == "<unk>" ? TokenType.Unknown
                : IsBytePiece(piece) ? TokenType.Byte
                : TokenType.Normal);
        }
        return new GgufVocabulary(tokens, scores, types, tokenizer.BosId, tokenizer.EosId, 0);
    }

    /// <summary>
    /// A placeholder vocabulary for a model without a tokenizer (random-weight fixtures and benchmarks):
    /// <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, the 256 byte tokens, then <c>▁tokN</c> pieces up to
    /// <paramref name="vocabSize"/> (at least 259).
    /// </summary>
    public static GgufVocabulary Placeholder(int vocabSize)
    {
        const int byteStart = 3;
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, byteStart + 256);
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        (tokens[0], types[0]) = ("<unk>", (int)TokenType.Unknown);
        (tokens[1], types[1]) = ("<s>", (int)TokenType.Control);
        (tokens[2], types[2]) = ("</s>", (int)TokenType.Control);
        for (int b = 0; b < 256; b++) (tokens[byteStart + b], types[byteStart + b]) = ($"<0x{b:X2}>", (int)TokenType.Byte);
        for (int id = byteStart + 256; id < vocabSize; id++) (tokens[id], scores[id], types[id]) = ($"\u2581tok{id}", -id, (int)TokenType.Normal);
        return new GgufVocabulary(tokens, scores, types, 1, 2, 0);
    }

    private static bool IsBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' && Uri.IsHexDigit(piece[3]) && Uri.IsHexDigit(piece[4]);
}
