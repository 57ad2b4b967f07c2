namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// The special tokens a tokenizer's files declare: what chat templates and generation need (the ids of tokens a
/// template writes by their text, the tokens that end a turn). Ids the files do not declare are null.
/// </summary>
/// <remarks>
/// Sources: GGUF <c>tokenizer.ggml.{bos,eos,eot,eom,unknown,padding}_token_id</c> and the CONTROL/USER_DEFINED tokens;
/// Hugging Face <c>tokenizer.json</c> <c>added_tokens</c>, <c>tokenizer_config.json</c> <c>bos_token</c>/<c>eos_token</c>
/// and <c>generation_config.json</c> <c>eos_token_id</c>; a SentencePiece model's own BOS/EOS/unknown ids.
/// </remarks>
public sealed record SpecialTokens
{
    /// <summary>Beginning of sequence.</summary>
    public int? Bos { get; init; }

    /// <summary>End of sequence (GGUF <c>eos_token_id</c>, tokenizer_config.json <c>eos_token</c>).</summary>
    public int? Eos { get; init; }

    /// <summary>End of turn (GGUF <c>eot_token_id</c>, e.g. <c>&lt;|eot_id|&gt;</c>).</summary>
    public int? Eot { get; init; }

    /// <summary>End of message (GGUF <c>eom_token_id</c>, e.g. Llama 3.1's <c>&lt;|eom_id|&gt;</c>).</summary>
    public int? Eom { get; init; }

    /// <summary>The unknown token.</summary>
    public int? Unknown { get; init; }

    /// <summary>The padding token.</summary>
    public int? Padding { get; init; }

    /// <summary>
    /// Every token the files mark as special or added (control, user-defined, Hugging Face added tokens), by its text:
    /// the ids a chat template's <c>&lt;|im_start|&gt;</c> or <c>&lt;end_of_turn&gt;</c> stands for.
    /// </summary>
    public IReadOnlyDictionary<string, int> ByText { get; init; } = new Dictionary<string, int>();

    /// <summary>
    /// Further tokens the files say end generation (Hugging Face generation_config.json <c>eos_token_id</c> when it
    /// lists several), besides <see cref="Eos"/>, <see cref="Eot"/> and <see cref="Eom"/>.
    /// </summary>
    public IReadOnlyList<int> OtherEndOfGeneration { get; init; } = [];

    /// <summary>Every token the files declare as ending generation: EOS, EOT, EOM and the others, each once, in that order.</summary>
    public IReadOnlyList<int> EndOfGeneration =>
        new[] { Eos, Eot, Eom }.OfType<int>().Concat(OtherEndOfGeneration).Distinct().ToArray();

    /// <summary>The id of the special or added token spelled <paramref name="text"/>, or null.</summary>
    /// <param name="text">The token's text, e.g. <c>&lt;|im_end|&gt;</c>.</param>
    public int? IdOf(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return ByText.TryGetValue(text, out int id) ? id : null;
    }
}
