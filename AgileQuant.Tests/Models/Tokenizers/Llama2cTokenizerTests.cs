using System.Buffers;
using System.Text;
using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

public class Llama2cTokenizerTests
{
    private static Llama2cTokenizer LoadStories260K(bool addBos = true) =>
        Llama2cTokenizer.Load(SharedAssets.InRepo("assets/models/stories260K/tok512.bin"), addBos);

    private static (string Prompt, int[] PromptTokens, int[] Continuation) ReadGolden()
    {
        string path = SharedAssets.Require("assets/golden/stories260K_once_upon_a_time.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = doc.RootElement;
        return (root.GetProperty("prompt").GetString()!,
            root.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("greedy_continuation").EnumerateArray().Select(e => e.GetInt32()).ToArray());
    }

    /// <summary>sentencepiece 0.1.97's ids for <see cref="ReadWikiText"/> with BOS: count, sum, and sum of index * id.</summary>
    internal static readonly (int Count, long Sum, long Weighted) SentencePieceWikiTextChecksum = (335_687, 2_653_730_020L, 440_597_383_987_028L);

    /// <summary>WikiText-2's test split, its lines joined by "\n".</summary>
    internal static string ReadWikiText() => string.Join("\n", File.ReadAllLines(SharedAssets.Require("assets/text/wikitext2/wiki.test.raw")));

    /// <summary>Count, sum and sum of index * id: a compact fingerprint of an id sequence computed by a reference tokenizer.</summary>
    internal static (int Count, long Sum, long Weighted) IdChecksum(IReadOnlyList<int> ids)
    {
        long sum = 0, weighted = 0;
        for (int i = 0; i < ids.Count; i++) { sum += ids[i]; weighted += (long)i * ids[i]; }
        return (ids.Count, sum, weighted);
    }

    internal static List<string> ReadTinyStories()
    {
        string text = File.ReadAllText(SharedAssets.Require("assets/text/tinystories/tinystories_valid_first1000.txt"), Encoding.UTF8);
        return text.Split("<|endoftext|>").Select(s => s.Trim()).Where(s => s.Length > 0).ToList();
    }

    [Test]
    public void Stories260K_LoadsVocabularyAndSpecialIds()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        Assert.That(tokenizer.VocabSize, Is.EqualTo(512));
        Assert.That(tokenizer.BosId, Is.EqualTo(1));
        Assert.That(tokenizer.EosId, Is.EqualTo(2));
        Assert.That(tokenizer.GetPiece(3), Is.EqualTo("<0x00>"));
        Assert.That(tokenizer.GetPiece(258), Is.EqualTo("<0xFF>"));
    }

    [Test]
    public void Stories260K_EncodesPromptAsLlama2c()
    {
        (string prompt, int[] expected, _) = ReadGolden();
        Llama2cTokenizer tokenizer = LoadStories260K();
        Assert.That(tokenizer.EncodeToIds(prompt), Is.EqualTo(expected));
        Assert.That(expected, Is.EqualTo(new[] { 1, 403, 407, 261, 378 }));
    }

    [Test]
    public void Stories260K_DecodesGreedyContinuationToPlainEnglish()
    {
        (string prompt, int[] promptTokens, int[] continuation) = ReadGolden();
        Llama2cTokenizer tokenizer = LoadStories260K();
        string text = tokenizer.Decode(promptTokens.Concat(continuation));
        TestContext.Out.WriteLine(text);
        Assert.That(text, Does.StartWith(prompt));
        Assert.That(text.All(c => c == '\n' || (c >= ' ' && c < 127)), Is.True, "printable ASCII only");
        string[] words = text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        Assert.That(words.Length, Is.GreaterThan(30));
        Assert.That(words.Count(w => w.Trim('.', ',', '!', '"', '\'') is "the" or "a" or "and" or "to" or "was"), Is.GreaterThan(3));
    }

    [Test]
    public void Stories260K_RoundTripsAllTinyStories()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        List<string> stories = ReadTinyStories();
        Assert.That(stories, Has.Count.EqualTo(1000));
        long tokens = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (string story in stories) tokenizer.EncodeToIds(story);
        TestContext.Out.WriteLine($"encoded 1000 stories in {clock.Elapsed.TotalMilliseconds:F0} ms");
        foreach (string story in stories)
        {
            IReadOnlyList<int> ids = tokenizer.EncodeToIds(story);
            Assert.That(ids[0], Is.EqualTo(tokenizer.BosId));
            tokens += ids.Count;
            // BOS then the dummy-prefix space, which decoding after BOS strips as llama2.c does.
            Assert.That(tokenizer.Decode(ids), Is.EqualTo(story));
        }
        TestContext.Out.WriteLine($"{tokens} tokens");
    }

    [Test]
    public void Stories260K_TinyStoriesTokenCountsMatchLlama2cPerplexityFigures()
    {
        // ../shared/assets/README.md, from llama2.c's own run: per-document scoring (BOS + story, cut at 512)
        // scores 369,992 tokens; the stream protocol (non-overlapping 512-token windows) scores 389,573.
        Llama2cTokenizer tokenizer = LoadStories260K();
        int[] lengths = ReadTinyStories().Select(story => tokenizer.EncodeToIds(story).Count).ToArray();
        long perDocument = lengths.Sum(length => (long)Math.Min(length, 512) - 1);
        long total = lengths.Sum(length => (long)length);
        long windows = (total + 511) / 512;
        Assert.That(perDocument, Is.EqualTo(369_992));
        Assert.That(total - windows, Is.EqualTo(389_573));
    }

    [Test]
    public void Stories260K_ByteFallbackCharactersDecodeWhole()
    {
        Llama2cTokenizer tokenizer = LoadStories260K(addBos: false);
        const string text = "caf\u00e9 \u2603 \U0001F600!";
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(text);
        Assert.That(ids.Count(id => id >= 3 && id < 259), Is.GreaterThanOrEqualTo(3 + 4), "☃ and 😀 fall back to their UTF-8 bytes");
        Assert.That(tokenizer.Decode(ids), Is.EqualTo(" " + text), "without BOS the dummy prefix stays");

        int snowmanFirstByte = ids.ToList().IndexOf(0xE2 + 3);
        string cut = tokenizer.Decode(ids.Take(snowmanFirstByte + 2));
        Assert.That(cut, Is.EqualTo(" caf\u00e9 \uFFFD"), "an incomplete trailing character becomes U+FFFD");
    }

    [Test]
    public void Stories260K_TextOfOnlyThreeByteCharactersFallsBackWithoutOverrun()
    {
        Llama2cTokenizer tokenizer = LoadStories260K(addBos: false);
        string snowmen = new('\u2603', 1000);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(snowmen);
        Assert.That(ids, Has.Count.EqualTo(1 + 3 * 1000));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo(" " + snowmen));
        Assert.That(tokenizer.Decode(tokenizer.EncodeToIds("a\uD800b")), Is.EqualTo(" a\uFFFDb"), "a lone surrogate encodes as U+FFFD");
    }

    [Test]
    public void Stories260K_EmptyTextIsBosOnly()
    {
        Assert.That(LoadStories260K().EncodeToIds(""), Is.EqualTo(new[] { 1 }));
        Assert.That(LoadStories260K(addBos: false).EncodeToIds(""), Is.Empty);
        Assert.That(LoadStories260K(addBos: false).CountTokens("Once upon a time"), Is.EqualTo(4));
    }

    [Test]
    public void Stories260K_TokenOffsetsCoverTheText()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        const string text = "Once upon a time, a girl named Lily saw a big tree.";
        IReadOnlyList<EncodedToken> tokens = tokenizer.EncodeToTokens(text, out string? normalized);
        Assert.That(normalized, Is.Null);
        var rebuilt = new StringBuilder();
        foreach (EncodedToken token in tokens.Skip(1))
            rebuilt.Append(text[token.Offset]);
        Assert.That(rebuilt.ToString(), Is.EqualTo(text));
        Assert.That(tokens.Select(t => t.Id), Is.EqualTo(tokenizer.EncodeToIds(text)));
        Assert.That(tokens[1].Value, Is.EqualTo(" Once").Or.EqualTo(tokenizer.GetPiece(tokens[1].Id)));
    }

    [Test]
    public void Stories260K_MaxTokenCountTruncatesAtTokenBoundary()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        const string text = "Once upon a time there was a cat.";
        IReadOnlyList<int> all = tokenizer.EncodeToIds(text);
        IReadOnlyList<int> first = tokenizer.EncodeToIds(text, 4, out _, out int charsConsumed);
        Assert.That(first, Is.EqualTo(all.Take(4)));
        Assert.That(text[..charsConsumed], Is.EqualTo(tokenizer.Decode(first)));
        int index = tokenizer.GetIndexByTokenCount(text, 4, out _, out int count);
        Assert.That((index, count), Is.EqualTo((charsConsumed, 4)));
        int fromEnd = tokenizer.GetIndexByTokenCountFromEnd(text, 3, out _, out int endCount);
        Assert.That(endCount, Is.EqualTo(3));
        Assert.That(text[fromEnd..], Is.EqualTo(tokenizer.Decode(all.Skip(all.Count - 3))));
    }

    [Test]
    public void Stories260K_DecodeIntoSpanReportsTooSmallDestination()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        int[] ids = [1, 403, 407, 261, 378];
        char[] big = new char[64];
        Assert.That(tokenizer.Decode(ids, big, out int consumed, out int written), Is.EqualTo(OperationStatus.Done));
        Assert.That(new string(big, 0, written), Is.EqualTo("Once upon a time"));
        Assert.That(consumed, Is.EqualTo(5));
        char[] small = new char[6];
        Assert.That(tokenizer.Decode(ids, small, out consumed, out written), Is.EqualTo(OperationStatus.DestinationTooSmall));
        Assert.That(new string(small, 0, written), Is.EqualTo("Once upon a time"[..written]));
        Assert.That(consumed, Is.LessThan(5));
    }

    [Test]
    public void Decode_RejectsIdOutsideVocabulary()
    {
        Llama2cTokenizer tokenizer = LoadStories260K();
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([1, 512]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
    }

    [Test]
    public void Stories260K_DecodeStripsOnlyAWordPieceSpaceAfterBos()
    {
        // llama2.c decode(): after BOS, a piece starting with ' ' loses it; the byte token <0x20> (id 35) is not a ' ' piece.
        Llama2cTokenizer tokenizer = LoadStories260K();
        Assert.That(tokenizer.Decode([1, 35, 403]), Is.EqualTo("  Once"));
        Assert.That(tokenizer.Decode([1, 403, 1, 403]), Is.EqualTo("OnceOnce"));
        Assert.That(tokenizer.Decode([403, 2]), Is.EqualTo(" Once"), "no BOS: the dummy-prefix space stays; EOS prints nothing");
    }

    [Test]
    public void Llama2_32k_MatchesSentencePieceReference()
    {
        string binPath = SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin");
        string modelPath = SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model");
        Llama2cTokenizer ours = Llama2cTokenizer.Load(binPath, 32000);
        LlamaTokenizer reference = HfLlamaTokenizerLoader.LoadModelFile(modelPath);
        Assert.That(ours.VocabSize, Is.EqualTo(32000));
        string[] sentences =
        [
            "Once upon a time",
            "Hello world! This is a test of the Llama 2 tokenizer.",
            "The quick brown fox jumps over the lazy dog, 1234567890 times.",
            "Perplexity on WikiText-2 is exp(mean NLL); GPTQ and QuaRot use 2048-token windows.",
            "Ünïcödé façade: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어.",
            "Emoji 😀 and symbols ∑ ∫ → ☃ fall back to bytes when missing.",
            "  leading spaces,   runs of spaces\tand a tab",
            "Line one.\nLine two.\n\nLine four.",
            ReadTinyStories()[0],
        ];
        foreach (string sentence in sentences)
            Assert.That(ours.EncodeToIds(sentence), Is.EqualTo(reference.EncodeToIds(sentence)), sentence);
    }

    [Test]
    public void Llama2_32k_MatchesSentencePieceReferenceOnAllTinyStories()
    {
        Llama2cTokenizer ours = Llama2cTokenizer.Load(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin"), 32000);
        LlamaTokenizer reference = HfLlamaTokenizerLoader.LoadModelFile(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model"));
        int mismatches = 0;
        string? first = null;
        foreach (string story in ReadTinyStories())
        {
            if (ours.EncodeToIds(story).SequenceEqual(reference.EncodeToIds(story))) continue;
            mismatches++;
            first ??= story;
        }
        Assert.That(mismatches, Is.Zero, first);
    }

    [Test]
    public void Llama2_32k_MatchesSentencePieceOnWikiText2()
    {
        // Reference: Google's sentencepiece 0.1.97 (Python binding), SentencePieceProcessor(tokenizer.model).encode(text),
        // BOS prepended, text = wiki.test.raw's lines joined by "\n". Microsoft.ML.Tokenizers 2.0.1's LlamaTokenizer
        // differs from it at 2 of these positions (" VIIIs" -> " VIII" + "s" where sentencepiece gives " VII" + "Is").
        Llama2cTokenizer tokenizer = Llama2cTokenizer.Load(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin"), 32000);
        Assert.That(tokenizer.EncodeToIds(" Mark VIIIs were produced"), Is.EqualTo(new[] { 1, 29871, 4485, 13408, 3624, 892, 7371 }));
        Assert.That(IdChecksum(tokenizer.EncodeToIds(ReadWikiText())), Is.EqualTo(SentencePieceWikiTextChecksum));
    }

    [Test]
    public void HandmadeVocabulary_MergesHighestScoreThenLeftmost()
    {
        using var dir = new TempDirectory();
        // Scores: "ba" (2) beats "ab" (1), so "aba" -> " " a ba; with equal scores the leftmost pair wins.
        string path = dir.Write("t.bin", Llama2cTokenizerFile.Build([(" ", 0f), ("a", 0f), ("b", 0f), ("ab", 1f), ("ba", 2f)]));
        Llama2cTokenizer tokenizer = Llama2cTokenizer.Load(path, addBos: false);
        int space = 259, a = 260, b = 261, ab = 262, ba = 263;
        Assert.That(tokenizer.EncodeToIds("aba"), Is.EqualTo(new[] { space, a, ba }));
        Assert.That(tokenizer.EncodeToIds("abab"), Is.EqualTo(new[] { space, a, ba, b }));

        string tied = dir.Write("tied.bin", Llama2cTokenizerFile.Build([(" ", 0f), ("a", 0f), ("b", 0f), ("ab", 1f), ("ba", 1f)]));
        Llama2cTokenizer tiedTokenizer = Llama2cTokenizer.Load(tied, addBos: false);
        Assert.That(tiedTokenizer.EncodeToIds("aba"), Is.EqualTo(new[] { space, ab, a }));
        Assert.That(tiedTokenizer.EncodeToIds("c"), Is.EqualTo(new[] { space, 'c' + 3 }), "unknown character falls back to its byte");
    }

    [Test]
    public void MalformedFiles_ThrowModelFormatExceptionNamingFileAndToken()
    {
        using var dir = new TempDirectory();
        byte[] good = Llama2cTokenizerFile.Build([(" ", 0f), ("ab", 1f)]);

        AssertRejects(dir.Write("empty.bin", []), "found 0");
        AssertRejects(dir.Write("zero-max.bin", Llama2cTokenizerFile.WithInt32(good, 0, 0)), "max_token_length");
        AssertRejects(dir.Write("huge-max.bin", Llama2cTokenizerFile.WithInt32(good, 0, int.MaxValue)), "max_token_length");
        AssertRejects(dir.Write("truncated-header.bin", good[..^5]), "token 260");
        AssertRejects(dir.Write("truncated-bytes.bin", good[..^1]), "token 260");
        int token0Length = 4 + 4;
        AssertRejects(dir.Write("negative.bin", Llama2cTokenizerFile.WithInt32(good, token0Length, -1)), "token 0");
        AssertRejects(dir.Write("too-long.bin", Llama2cTokenizerFile.WithInt32(good, token0Length, 1 << 20)), "token 0");
        AssertRejects(dir.Write("nan.bin", Llama2cTokenizerFile.WithInt32(good, 4, BitConverter.SingleToInt32Bits(float.NaN))), "token 0");
        AssertRejects(dir.Write("too-few.bin", Llama2cTokenizerFile.Build([], byteTokens: 100)), "at least 259");

        string valid = dir.Write("valid.bin", good);
        Assert.That(Llama2cTokenizer.Load(valid).VocabSize, Is.EqualTo(261));
        Assert.That(Llama2cTokenizer.Load(valid, 261).VocabSize, Is.EqualTo(261));
        var fewer = Assert.Throws<ModelFormatException>(() => Llama2cTokenizer.Load(valid, 262))!;
        Assert.That(fewer.Message, Does.Contain(valid).And.Contain("token 261"));
        var more = Assert.Throws<ModelFormatException>(() => Llama2cTokenizer.Load(valid, 260))!;
        Assert.That(more.Message, Does.Contain(valid).And.Contain("vocab size mismatch"));
        Assert.Throws<ModelFormatException>(() => Llama2cTokenizer.Load(Path.Combine(dir.Path, "missing.bin")));
    }

    private static void AssertRejects(string path, string expectedFragment)
    {
        var error = Assert.Throws<ModelFormatException>(() => Llama2cTokenizer.Load(path))!;
        Assert.That(error.FilePath, Is.EqualTo(path));
        Assert.That(error.Message, Does.Contain(path).And.Contain(expectedFragment));
    }
}

/// <summary>Writes llama2.c tokenizer.bin files: 3 specials, byte tokens, then the given tokens.</summary>
internal static class Llama2cTokenizerFile
{
    public static byte[] Build(IReadOnlyList<(string Text, float Score)> tokens, int byteTokens = 256)
    {
        var all = new List<(byte[] Bytes, float Score)>
        {
            ("<unk>"u8.ToArray(), 0f), ("\n<s>\n"u8.ToArray(), 0f), ("\n</s>\n"u8.ToArray(), 0f),
        };
        for (int b = 0; b < byteTokens; b++) all.Add((Encoding.ASCII.GetBytes($"<0x{b:X2}>"), 0f));
        all.AddRange(tokens.Select(t => (Encoding.UTF8.GetBytes(t.Text), t.Score)));
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write(all.Max(t => t.Bytes.Length));
        foreach ((byte[] bytes, float score) in all)
        {
            writer.Write(score);
            writer.Write(bytes.Length);
            writer.Write(bytes);
        }
        writer.Flush();
        return stream.ToArray();
    }

    public static byte[] WithInt32(byte[] file, int offset, int value)
    {
        byte[] copy = (byte[])file.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(offset), value);
        return copy;
    }
}

/// <summary>A temporary folder removed on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("agilequant-tok-").FullName;

    public string Write(string name, byte[] content)
    {
        string path = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
