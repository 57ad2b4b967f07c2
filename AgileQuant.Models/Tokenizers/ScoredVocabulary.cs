namespace AgileQuant.Models.Tokenizers;

/// <summary>Everything a <see cref="ScoredMergeTokenizer"/> needs, per token and for the text.</summary>
/// <param name="Pieces">(V,) token text as the vocabulary spells it.</param>
/// <param name="DecodedBytes">(V,) bytes each token contributes when decoding (empty for control tokens).</param>
/// <param name="Scores">(V,) merge scores, higher merges first.</param>
/// <param name="Matchable">(V,) whether text may turn into this token (false for control, byte and unknown tokens in SentencePiece).</param>
/// <param name="ByteTokenIds">(256,) the byte-fallback token of each byte value.</param>
/// <param name="SpaceSymbol">How pieces spell a space: ' ' in llama2.c files, '\u2581' in SentencePiece vocabularies.</param>
/// <param name="AddSpacePrefix">Whether a space symbol is prepended to non-empty text.</param>
/// <param name="StripSpaceAtStart">Whether decoding drops the leading space of the first token (not only after BOS).</param>
/// <param name="MergeFloor">Tokens with a score at or below this never form by merging.</param>
/// <param name="BosId">Beginning-of-sequence token, or -1.</param>
/// <param name="EosId">End-of-sequence token, or -1.</param>
/// <param name="Merges">Merges in rank order (left, right, merged token), for a BPE that merges listed pairs by rank
/// instead of pieces by score; null merges pieces by score.</param>
/// <param name="StripSpaceAfterBos">Whether decoding drops the leading space of the token after BOS (llama2.c, SentencePiece).</param>
/// <param name="PrefixOnlyAtTextStart">Whether the space prefix goes only before text at the very start, not also before
/// text that follows an added token.</param>
internal sealed record ScoredVocabulary(
    string[] Pieces,
    byte[][] DecodedBytes,
    float[] Scores,
    bool[] Matchable,
    int[] ByteTokenIds,
    char SpaceSymbol,
    bool AddSpacePrefix,
    bool StripSpaceAtStart,
    float MergeFloor,
    int BosId,
    int EosId,
    IReadOnlyList<(int Left, int Right, int Merged)>? Merges = null,
    bool StripSpaceAfterBos = true,
    bool PrefixOnlyAtTextStart = false);
