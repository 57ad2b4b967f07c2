namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// A token that text spells as a fixed string and that is cut out of the text before any other processing: a
/// Hugging Face <c>added_tokens</c> entry, a GGUF <c>CONTROL</c> or <c>USER_DEFINED</c> token.
/// </summary>
/// <param name="Content">The text of the token.</param>
/// <param name="Id">The token id.</param>
/// <param name="Special">A special (control) token such as BOS or <c>&lt;|im_end|&gt;</c>: matched only when the caller asks
/// for special tokens; otherwise (a user-defined token) always matched, as llama.cpp and Hugging Face do.</param>
/// <param name="LStrip">Whether whitespace just before the token is dropped with it.</param>
/// <param name="RStrip">Whether whitespace just after the token is dropped with it.</param>
internal readonly record struct AddedToken(string Content, int Id, bool Special, bool LStrip = false, bool RStrip = false);

/// <summary>A stretch of the text: plain text (<see cref="TokenId"/> -1) or one added token.</summary>
/// <param name="Start">First char.</param>
/// <param name="Length">Number of chars (the token's own text for a token, whitespace it strips excluded).</param>
/// <param name="TokenId">The added token's id, or -1 for plain text.</param>
internal readonly record struct TextFragment(int Start, int Length, int TokenId)
{
    public bool IsToken => TokenId >= 0;
}

/// <summary>
/// Finds added tokens in text: at the leftmost position where one starts, the longest one that starts there (Hugging
/// Face's added-vocabulary matching). llama.cpp instead takes tokens longest first over the whole text; the two differ
/// only when two added tokens overlap in the text.
/// </summary>
/// <remarks>Immutable once built; safe to use from several threads at once.</remarks>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int Token = -1; // index into _tokens of the token ending here
    }

    private readonly Node _root = new();
    private readonly AddedToken[] _tokens;

    private AddedTokenMatcher(AddedToken[] tokens)
    {
        _tokens = tokens;
        for (int t = 0; t < tokens.Length; t++)
        {
            Node node = _root;
            foreach (char c in tokens[t].Content)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out Node? child)) node.Children[c] = child = new Node();
                node = child;
            }
            if (node.Token < 0) node.Token = t; // the first of two equal contents wins
        }
    }

    /// <summary>
    /// A matcher for the <paramref name="tokens"/> text may spell: all user-defined ones, and the special ones when
    /// <paramref name="parseSpecialTokens"/>; null when that leaves none.
    /// </summary>
    public static AddedTokenMatcher? Create(IEnumerable<AddedToken> tokens, bool parseSpecialTokens)
    {
        AddedToken[] matched = tokens.Where(t => t.Content.Length > 0 && (parseSpecialTokens || !t.Special)).ToArray();
        return matched.Length == 0 ? null : new AddedTokenMatcher(matched);
    }

    /// <summary>Appends to <paramref name="fragments"/> the text and token stretches of <paramref name="text"/>, in order.</summary>
    public void Split(ReadOnlySpan<char> text, List<TextFragment> fragments)
    {
        int textStart = 0; // first char not yet in a fragment
        int i = 0;
        while (i < text.Length)
        {
            (int token, int length) = LongestAt(text, i);
            if (token < 0)
            {
                i++;
                continue;
            }
            AddedToken added = _tokens[token];
            int textEnd = i;
            if (added.LStrip) while (textEnd > textStart && char.IsWhiteSpace(text[textEnd - 1])) textEnd--;
            if (textEnd > textStart) fragments.Add(new TextFragment(textStart, textEnd - textStart, -1));
            fragments.Add(new TextFragment(i, length, added.Id));
            i += length;
            if (added.RStrip) while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            textStart = i;
        }
        if (text.Length > textStart) fragments.Add(new TextFragment(textStart, text.Length - textStart, -1));
    }

    /// <summary>The longest token starting at <paramref name="start"/> (index into the tokens, -1 if none) and its length.</summary>
    private (int Token, int Length) LongestAt(ReadOnlySpan<char> text, int start)
    {
        Node node = _root;
        int best = -1, bestLength = 0;
        for (int j = start; j < text.Length; j++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[j], out Node? child)) break;
            node = child;
            if (node.Token >= 0) { best = node.Token; bestLength = j - start + 1; }
        }
        return (best, bestLength);
    }
}
