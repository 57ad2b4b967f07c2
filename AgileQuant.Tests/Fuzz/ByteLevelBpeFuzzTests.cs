using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Models.SafeTensors;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the byte-level BPE readers through <see cref="HfTokenizerLoader.LoadFromDirectory"/>: <c>tokenizer.json</c>
/// (<see cref="ByteLevelBpeTokenizerLoader.FromTokenizerJson"/> and the post-processor's BOS), <c>vocab.json</c> and
/// <c>merges.txt</c> (<see cref="ByteLevelBpeTokenizerLoader.FromVocabAndMerges"/>), and <c>tokenizer_config.json</c>.
/// Every input must load (then a fixed text is encoded and decoded) or fail with a <see cref="ModelFormatException"/>.
/// </summary>
[Category("Fuzz")]
public sealed class ByteLevelBpeFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-bpe-", inMemory: true)
{
    private const string SampleText = "Hello, y'all! the cat in a hat \uD83D\uDE01 \u6211 <|endoftext|>\t\n  end";

    /// <summary>GPT-2's byte → printable character map (openai/gpt-2 encoder.py bytes_to_unicode).</summary>
    public static string[] ByteAlphabet()
    {
        var alphabet = new string[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            alphabet[b] = ((char)(b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 ? b : next++)).ToString();
        return alphabet;
    }

    private static readonly string[] MergeList = ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a", "a t", "\u0120 c", "\u0120c at", "\u0120 h", "\u0120h at"];

    /// <summary>Token → id: the 256 byte characters, the merges' results, and <c>&lt;|endoftext|&gt;</c>.</summary>
    public static Dictionary<string, int> Vocabulary()
    {
        var vocabulary = ByteAlphabet().Select((token, id) => (token, id)).ToDictionary(p => p.token, p => p.id);
        foreach (string merge in MergeList) vocabulary.TryAdd(merge.Replace(" ", ""), vocabulary.Count);
        vocabulary["<|endoftext|>"] = vocabulary.Count;
        return vocabulary;
    }

    /// <summary>tokenizer.json seeds: GPT-2 style (ByteLevel with regex, BOS template, string merges) and BLOOM style (Split + ByteLevel, pair merges).</summary>
    public static List<byte[]> TokenizerJsonSeeds()
    {
        Dictionary<string, int> vocabulary = Vocabulary();
        int eos = vocabulary["<|endoftext|>"];
        JsonNode Added() => JsonNode.Parse($$"""[{"id":{{eos}},"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}]""")!;
        JsonObject Model(bool pairs) => new()
        {
            ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
            ["fuse_unk"] = false, ["byte_fallback"] = false,
            ["vocab"] = JsonSerializer.SerializeToNode(vocabulary),
            ["merges"] = pairs ? new JsonArray(MergeList.Select(m => (JsonNode)new JsonArray(m.Split(' ').Select(s => (JsonNode)s!).ToArray())).ToArray())
                               : new JsonArray(MergeList.Select(m => (JsonNode)m!).ToArray()),
        };
        var gpt2 = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = Added(), ["normalizer"] = null,
            ["pre_tokenizer"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"""),
            ["post_processor"] = JsonNode.Parse("""{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|endoftext|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{}}"""),
            ["decoder"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"""),
            ["model"] = Model(pairs: false),
        };
        var bloom = new JsonObject
        {
            ["version"] = "1.0", ["added_tokens"] = Added(), ["normalizer"] = null,
            ["pre_tokenizer"] = JsonNode.Parse("""
                {"type":"Sequence","pretokenizers":[
                  {"type":"Split","pattern":{"Regex":" ?[^(\\s|[.,!?…。，、।۔،])]+"},"behavior":"Isolated","invert":false},
                  {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}
                """),
            ["post_processor"] = JsonNode.Parse("""{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"TemplateProcessing","single":[{"Sequence":{"id":"A","type_id":0}}]}]}"""),
            ["model"] = Model(pairs: true),
        };
        return [Encoding.UTF8.GetBytes(gpt2.ToJsonString()), Encoding.UTF8.GetBytes(bloom.ToJsonString())];
    }

    /// <summary>vocab.json of <see cref="Vocabulary"/>.</summary>
    public static byte[] VocabJson() => JsonSerializer.SerializeToUtf8Bytes(Vocabulary());

    /// <summary>merges.txt with the version line.</summary>
    public static byte[] MergesTxt() => Encoding.UTF8.GetBytes("#version: 0.2\n" + string.Join("\n", MergeList) + "\n");

    private static void LoadEncodeDecode(string directory)
    {
        Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(directory);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(SampleText);
        _ = tokenizer.Decode(ids);
    }

    private FuzzReport Fuzz(string fileName, List<byte[]> seeds, IReadOnlyList<IFuzzMutator> mutators, int baseSeed, int iterations = FuzzCampaign.DefaultIterations)
    {
        string path = Path.Combine(Temp.FullPath, fileName);
        var options = new FuzzOptions(FuzzCampaign.Iterations(iterations), baseSeed, FuzzCampaign.PerInputLimit, StackProbability: 0.4);
        return FuzzRunner.Run(seeds, mutators, FuzzRunner.ThroughFile(path, _ => LoadEncodeDecode(Temp.FullPath)),
            e => e is ModelFormatException m && m.FilePath.StartsWith(Temp.FullPath, StringComparison.Ordinal), options,
            message => FuzzRunner.MaskMessage(message.Replace(Temp.FullPath, "<dir>")));
    }

    [Test]
    public void SeedsLoadAndRoundTrip()
    {
        foreach (byte[] seed in TokenizerJsonSeeds())
        {
            Temp.Write("tokenizer.json", seed);
            Tokenizer tokenizer = HfTokenizerLoader.LoadFromDirectory(Temp.FullPath);
            Assert.That(tokenizer.Decode(tokenizer.EncodeToIds(" the cat in a hat")), Does.EndWith(" the cat in a hat"));
        }
        File.Delete(Path.Combine(Temp.FullPath, "tokenizer.json"));
        Temp.Write("vocab.json", VocabJson());
        Temp.Write("merges.txt", MergesTxt());
        Tokenizer fromFiles = HfTokenizerLoader.LoadFromDirectory(Temp.FullPath);
        Assert.That(fromFiles.EncodeToIds(" the"), Is.EqualTo(new[] { Vocabulary()["\u0120the"] }));
    }

    [Test]
    public void TokenizerJsonOnlyLoadsOrRaisesModelFormatException()
    {
        FuzzReport report = Fuzz("tokenizer.json", TokenizerJsonSeeds(),
            [new TokenizerJsonMutator(), new TokenizerJsonMutator(), new JsonStructureMutator("model", "pre_tokenizer", "added_tokens", "post_processor"), new ByteMutator()],
            baseSeed: 12_000);
        FuzzCampaign.Check("tokenizer.json (HfTokenizerLoader → ByteLevelBpeTokenizerLoader)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(15));
    }

    [Test]
    public void VocabJsonOnlyLoadsOrRaisesModelFormatException()
    {
        Temp.Write("merges.txt", MergesTxt());
        FuzzReport report = Fuzz("vocab.json", [VocabJson()],
            [new TokenizerJsonMutator(), new JsonStructureMutator(), new ByteMutator()], baseSeed: 13_000);
        FuzzCampaign.Check("vocab.json (+ merges.txt, FromVocabAndMerges)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(5));
    }

    [Test]
    public void MergesTxtOnlyLoadsOrRaisesModelFormatException()
    {
        Temp.Write("vocab.json", VocabJson());
        FuzzReport report = Fuzz("merges.txt", [MergesTxt()], [new LineMutator(), new LineMutator(), new ByteMutator()], baseSeed: 14_000);
        FuzzCampaign.Check("merges.txt (+ vocab.json, FromVocabAndMerges)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(3));
    }

    [Test]
    public void TokenizerConfigOnlyLoadsOrRaisesModelFormatException()
    {
        Temp.Write("tokenizer.json", TokenizerJsonSeeds()[0]);
        byte[] config = """{"add_bos_token":true,"add_eos_token":false,"bos_token":{"content":"<|endoftext|>","special":true},"model_max_length":1024}"""u8.ToArray();
        FuzzReport report = Fuzz("tokenizer_config.json", [config, """{"add_bos_token":false,"bos_token":"<|endoftext|>"}"""u8.ToArray()],
            [new JsonStructureMutator("add_bos_token", "bos_token"), new ByteMutator()], baseSeed: 15_000,
            iterations: 5_000); // a small file with two fields read; each input also loads the full tokenizer.json

        FuzzCampaign.Check("tokenizer_config.json (HfTokenizerLoader)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
    }

    /// <summary>
    /// Token-level edits of a tokenizer.json or vocab.json: ids duplicated, negative, 2^31 − 1 or 2^30 (a sparse id space),
    /// tokens removed, renamed or emptied; merges removed, duplicated, split into three, joined, pointing at unknown tokens,
    /// thousands of them, or not strings; added tokens with huge ids or empty content; Split patterns that do not compile
    /// or backtrack catastrophically.
    /// </summary>
    private sealed class TokenizerJsonMutator : IFuzzMutator
    {
        private static readonly long[] Ids = [-1, 0, 1, 255, 256, 1 << 16, 1 << 24, 1 << 30, int.MaxValue, (long)int.MaxValue + 1, long.MaxValue];
        private static readonly string[] Patterns = ["(a+)+$", "(", "[", "\\", "(?<n>a)\\k<m>", "\\p{Foo}", "", "(?=.*)*", "[^[^a]]", "(?:\\s|\\S)*x", ".{0,2147483647}", "\\G"];
        private static readonly string[] Tokens = ["", " ", "\u0120", "<|endoftext|>", "a b", "\uFFFD", "\uD800", "x\0y", "\u0120the\u0120the"];

        public string Name => "tokenizer-json";

        public byte[] Mutate(byte[] input, Random random)
        {
            try
            {
                return JsonNode.Parse(input) is JsonObject top ? Mutate(top, random) : input;
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
            {
                // JsonNode parses lazily: duplicate keys or a lone surrogate left by an earlier mutation surface here.
                return input;
            }
        }

        private static byte[] Mutate(JsonObject top, Random random)
        {
            JsonObject? model = top["model"] as JsonObject;
            JsonObject? vocab = model is null ? top : model["vocab"] as JsonObject;
            JsonArray? merges = model?["merges"] as JsonArray;
            switch (random.Next(10))
            {
                case 0 or 1 when vocab is { Count: > 0 }:
                {
                    string token = vocab.ElementAt(random.Next(vocab.Count)).Key;
                    vocab[token] = random.Next(3) == 0 ? vocab.ElementAt(random.Next(vocab.Count)).Value?.DeepClone() : Ids[random.Next(Ids.Length)];
                    break;
                }
                case 2 when vocab is { Count: > 0 }:
                {
                    string token = vocab.ElementAt(random.Next(vocab.Count)).Key;
                    JsonNode? id = vocab[token]?.DeepClone();
                    vocab.Remove(token);
                    if (random.Next(2) == 0) vocab[Tokens[random.Next(Tokens.Length)] + (random.Next(2) == 0 ? token : "")] = id;
                    break;
                }
                case 3 when merges is { Count: > 0 }:
                {
                    int at = random.Next(merges.Count);
                    switch (random.Next(5))
                    {
                        case 0: merges.RemoveAt(at); break;
                        case 1: merges.Insert(at, merges[random.Next(merges.Count)]?.DeepClone()); break;
                        case 2: merges[at] = random.Next(2) == 0 ? "a b c" : "\u0120t"; break;
                        case 3: merges[at] = Tokens[random.Next(Tokens.Length)] + " " + Tokens[random.Next(Tokens.Length)]; break;
                        default: merges[at] = random.Next(3) switch { 0 => new JsonArray("a"), 1 => new JsonArray(1, 2), _ => JsonValue.Create(7) }; break;
                    }
                    break;
                }
                case 4 when merges is { Count: > 0 }:
                {
                    int copies = random.Next(8) == 0 ? random.Next(5_000, 20_000) : random.Next(10, 1_000);
                    JsonNode? merge = merges[random.Next(merges.Count)];
                    for (int i = 0; i < copies; i++) merges.Add(merge?.DeepClone());
                    break;
                }
                case 5 when top["added_tokens"] is JsonArray { Count: > 0 } added && added[0] is JsonObject token:
                {
                    if (random.Next(2) == 0) token["id"] = Ids[random.Next(Ids.Length)];
                    else token["content"] = Tokens[random.Next(Tokens.Length)];
                    break;
                }
                case 6 when top["pre_tokenizer"] is JsonObject pre:
                {
                    var split = new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = random.Next(4) == 0 ? new JsonObject { ["String"] = Tokens[random.Next(Tokens.Length)] } : new JsonObject { ["Regex"] = Patterns[random.Next(Patterns.Length)] },
                        ["behavior"] = random.Next(5) == 0 ? JsonValue.Create(3) : "Isolated", ["invert"] = random.Next(5) == 0,
                    };
                    top["pre_tokenizer"] = new JsonObject
                    {
                        ["type"] = "Sequence",
                        ["pretokenizers"] = new JsonArray(split, JsonNode.Parse($$"""{"type":"ByteLevel","add_prefix_space":false,"use_regex":{{(random.Next(4) == 0 ? "true" : "false")}}}""")),
                    };
                    _ = pre;
                    break;
                }
                case 7 when vocab is not null:
                {
                    // A large vocabulary with ids spread far apart.
                    int extra = random.Next(8) == 0 ? random.Next(5_000, 20_000) : random.Next(10, 1_000);
                    int stride = random.Next(2) == 0 ? 1 : 30_000;
                    for (int i = 0; i < extra; i++) vocab[$"tok{i}"] = 1_000 + (long)i * stride;
                    break;
                }
                case 8 when top["post_processor"] is JsonObject:
                    top["post_processor"] = JsonNode.Parse(random.Next(3) switch
                    {
                        0 => """{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<unknown>","type_id":0}}]}""",
                        1 => """{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":7}}]}""",
                        _ => """{"type":"Sequence","processors":[{"type":"TemplateProcessing","single":[]},null,3]}""",
                    });
                    break;
                default:
                    if (vocab is not null) vocab[Tokens[random.Next(Tokens.Length)]] = Ids[random.Next(Ids.Length)];
                    break;
            }
            return Encoding.UTF8.GetBytes(top.ToJsonString());
        }
    }

    /// <summary>Line edits of merges.txt: delete, duplicate, swap, split or join tokens, tabs, CRLF, a BOM, invalid UTF-8, huge files.</summary>
    private sealed class LineMutator : IFuzzMutator
    {
        private static readonly string[] Lines = ["", "#version: 0.2", "a", "a b c", " a", "a ", "\u0120 \u0120", "x y", "a\tb", "\uFEFFh e", "\u0120t he\r", "  ", "h e"];

        public string Name => "lines";

        public byte[] Mutate(byte[] input, Random random)
        {
            var lines = Encoding.UTF8.GetString(input).Split('\n').ToList();
            int at = random.Next(lines.Count);
            switch (random.Next(7))
            {
                case 0: lines.RemoveAt(at); break;
                case 1: lines.Insert(at, lines[random.Next(lines.Count)]); break;
                case 2:
                {
                    int other = random.Next(lines.Count);
                    (lines[at], lines[other]) = (lines[other], lines[at]);
                    break;
                }
                case 3: lines[at] = Lines[random.Next(Lines.Length)]; break;
                case 4: lines.Insert(at, Lines[random.Next(Lines.Length)]); break;
                case 5:
                {
                    int copies = random.Next(8) == 0 ? random.Next(5_000, 20_000) : random.Next(10, 1_000);
                    lines.InsertRange(at, Enumerable.Repeat(lines[at], copies));
                    break;
                }
                default:
                    return [.. Encoding.UTF8.GetBytes(string.Join('\n', lines.Take(at))), 0xFF, 0xC3, .. Encoding.UTF8.GetBytes(string.Join('\n', lines.Skip(at)))];
            }
            return Encoding.UTF8.GetBytes(string.Join(random.Next(6) == 0 ? "\r\n" : "\n", lines));
        }
    }
}
