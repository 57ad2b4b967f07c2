using Microsoft.ML.Tokenizers;

namespace AgileQuant.Core.Generation;

/// <summary>
/// Turns a stream of token ids into a stream of text pieces, never emitting half a UTF-8 character:
/// a piece whose bytes end mid-character (decoded as U+FFFD) is held back until the character completes.
/// </summary>
/// <remarks>
/// Each new token is decoded together with the token before it, and only the text after that context
/// is emitted, so tokenizers that drop a leading space at the start of a decode still space words right.
/// </remarks>
public sealed class IncrementalDetokenizer
{
    private const int MaxPendingTokens = 4; // a UTF-8 character spans at most 4 byte tokens
    private readonly Tokenizer _tokenizer;
    private readonly List<int> _window = []; // context token (if any) + tokens not yet emitted
    private int _contextCount;               // how many leading entries of _window are already-emitted context

    /// <summary>Creates a detokenizer; <paramref name="context"/> is the last prompt token, if any.</summary>
    public IncrementalDetokenizer(Tokenizer tokenizer, int? context = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        if (context is int c) { _window.Add(c); _contextCount = 1; }
    }

    /// <summary>Adds a token and returns the text it completes (possibly empty).</summary>
    public string Add(int tokenId)
    {
        _window.Add(tokenId);
        string contextText = _contextCount == 0 ? "" : _tokenizer.Decode(_window.GetRange(0, _contextCount)) ?? "";
        string text = _tokenizer.Decode(_window) ?? "";
        bool incomplete = text.EndsWith('\uFFFD') && _window.Count - _contextCount < MaxPendingTokens;
        if (incomplete) return "";
        string piece = text.StartsWith(contextText, StringComparison.Ordinal) ? text[contextText.Length..] : text;
        // The last emitted token becomes the context of the next one.
        _window.RemoveRange(0, _window.Count - 1);
        _contextCount = 1;
        return piece;
    }
}
