using System.Text;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Models.Tokenizers;
using AgileQuant.Tests.Fuzz;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models;

/// <summary>
/// The value checks every config reader shares (<see cref="ConfigValueChecks"/>): a Hugging Face config.json, a llama2.c
/// header or a declared context length that would give NaN, ∞ or an unbounded allocation is refused on one line naming
/// the file and the key. (The GGUF and quantized-checkpoint cases are in their readers' corrupt-input tests.)
/// </summary>
[TestFixture]
public sealed class ConfigValueCheckTests() : TemporaryDirectoryFixture("aq-config-values-")
{
    private string HfModel(string key, string value)
    {
        Temp.Write(SafeTensorsCheckpoint.SingleFileName, HuggingFaceFuzzTests.LlamaWeights());
        string config = HuggingFaceFuzzTests.LlamaConfig;
        int at = config.IndexOf($"\"{key}\":", StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), key);
        int end = config.IndexOfAny([',', '}'], at);
        Temp.Write("config.json", Encoding.UTF8.GetBytes(config[..at] + $"\"{key}\":{value}" + config[end..]));
        return Temp.FullPath;
    }

    private static ModelFormatException Refused(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, new ModelLoadOptions()))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Not.Contain('\n'), "one line");
        return e;
    }

    [TestCase("rms_norm_eps", "0", "expected a finite norm epsilon in (0, 1]")]
    [TestCase("rms_norm_eps", "-1e-6", "expected a finite norm epsilon in (0, 1]")]
    [TestCase("rms_norm_eps", "1e39", "expected a finite norm epsilon in (0, 1]")]
    [TestCase("rope_theta", "0", "expected a finite RoPE base in (0, 1e12]")]
    [TestCase("rope_theta", "-10000", "expected a finite RoPE base in (0, 1e12]")]
    [TestCase("rope_theta", "1e39", "expected a finite RoPE base in (0, 1e12]")]
    [TestCase("max_position_embeddings", "268435456", "expected a context length of at most 16777216 tokens, found 268435456")]
    public void HuggingFaceValueOutOfRangeIsRefusedNamingTheKey(string key, string value, string message)
    {
        ModelFormatException e = Refused(HfModel(key, value));
        Assert.That(e.FilePath, Does.EndWith("config.json"));
        Assert.That(e.Message, Does.Contain(key + ": " + message));
    }

    [Test]
    public void HuggingFaceValuesInRangeStillLoad() =>
        Assert.That(ModelLoader.Load(HfModel("rope_theta", "500000.0"), new ModelLoadOptions()).Model.Config.RotaryTheta, Is.EqualTo(500000f));

    [Test]
    public void DeclaredContextLengthSizesNothingUpFront()
    {
        // A 2 KB model declaring the largest accepted context: its inference context holds memory for the tokens it saw.
        // (2^28 used to fail with OutOfMemoryException in the InferenceContext constructor; it is now refused, above.)
        // The reference: the same weights declaring a 64-token context, whose logits for 3 tokens the declared length
        // cannot change (it sizes nothing, and this config has no RoPE scaling that reads it).
        float[] reference;
        using (LoadedModel small = ModelLoader.Load(HfModel("max_position_embeddings", "64"), new ModelLoadOptions()))
            reference = small.Model.CreateContext().Forward([1, 5, 7], allLogits: false, [], []);
        using LoadedModel loaded = ModelLoader.Load(HfModel("max_position_embeddings", ConfigValueChecks.MaxContextLength.ToString()), new ModelLoadOptions());
        Assert.That(loaded.Model.Config.MaxSequenceLength, Is.EqualTo(ConfigValueChecks.MaxContextLength));
        long before = GC.GetAllocatedBytesForCurrentThread();
        InferenceContext context = loaded.Model.CreateContext();
        float[] logits = context.Forward([1, 5, 7], allLogits: false, [], []);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(logits, Has.Length.EqualTo(16));
        Assert.That(reference, Has.All.Matches<float>(float.IsFinite), "the reference is finite");
        Assert.That(logits, Is.EqualTo(reference), "the declared context length changes no logit");
        Assert.That(allocated, Is.LessThan(16L << 20), "a slot record per context position would take 2 × 2^24 × 5 bytes");
    }

    [Test]
    public void Llama2cHeaderWithTooSmallAVocabularyForItsTokenizerNamesTheHeaderField()
    {
        string model = Temp.Write("model.bin", Llama2cFuzzTests.CheckpointSeeds()[0]); // vocab 16
        string tokenizer = SharedAssets.InRepo("assets/models/stories260K/tok512.bin");
        ModelFormatException e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(model, new ModelLoadOptions { TokenizerPath = tokenizer }))!;
        Assert.That(e.FilePath, Is.EqualTo(model));
        Assert.That(e.Message, Does.Contain("header field vocab_size is 16").And.Contain($"at least {Llama2cTokenizer.MinVocabSize} tokens"));
    }

    private string SplitTokenizerJson(string pattern) => Temp.Write("tokenizer.json", Encoding.UTF8.GetBytes($$$"""
        {"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"{{{pattern}}}"},"behavior":"Isolated","invert":false},
         {"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
         "model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}
        """));

    [TestCase("(a|aa)+$")]
    [TestCase("(a|aa|aaa)*!$")]
    public void SplitRegexThatBacktracksCatastrophicallyIsRefusedWhenLoaded(string pattern)
    {
        string path = SplitTokenizerJson(pattern);
        ModelFormatException e = SpecialFileTests.RefusedWithin(TimeSpan.FromSeconds(10), () => ByteLevelBpeTokenizerLoader.FromTokenizerJson(path));
        Assert.That(e.Message, Does.Contain(pattern).And.Contain("catastrophic backtracking"));
    }

    [Test]
    public void NestedQuantifierThatDotNetFoldsIntoOneLoopEncodesLongTextQuickly()
    {
        // .NET reduces (?:a+)+ to a+ (groups do not capture under the catalog's ExplicitCapture), so this classic pattern
        // is linear here: it loads, and a long run of its character encodes well inside the match timeout.
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = ByteLevelBpeTokenizerLoader.FromTokenizerJson(SplitTokenizerJson("(a+)+$"));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        // No match (the text ends in "b"), so one piece: 19,999 single "a" tokens and the merged "ab".
        Assert.That(tokenizer.EncodeToIds(new string('a', 20_000) + "b"), Has.Count.EqualTo(20_000));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)));
    }

    [Test]
    public void SplitRegexThatMatchesInLinearTimeStillLoadsAndSplits() =>
        // "ab" is split into "a" and "b" before the merge could join them.
        Assert.That(ByteLevelBpeTokenizerLoader.FromTokenizerJson(SplitTokenizerJson("a+|b+")).EncodeToIds("ab"), Is.EqualTo(new[] { 0, 1 }));
}
