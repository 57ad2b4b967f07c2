using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.Gguf;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// Corrupt or contradictory metadata of the new families, in GGUF and in Hugging Face checkpoints, is refused with one
/// line that names the file and the key or tensor: head counts that do not divide, RoPE scaling types that are not
/// supported or contradict each other, missing tensors of a declared family, a rope_freqs tensor that does not fit; and
/// the GGUF writer refuses a model its family's GGUF files cannot state.
/// </summary>
[TestFixture]
public class FamilyCorruptMetadataTests
{
    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TemporaryDirectory("aq-family-corrupt-");

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    private static FamilyTestModel Model(string name) => FamilyTestModel.All.Single(m => m.Name == name);

    private static TransformerWeights Weights(string name) => Model(name).RandomWeights(seed: 7);

    // ---- GGUF ----

    [TestCase("qwen3", "qwen3.attention.head_count_kv", 3u, "'qwen3.attention.head_count_kv' = 3 does not divide 'qwen3.attention.head_count' = 4")]
    [TestCase("llama3.2", "llama.attention.head_count", 3u, "'llama.attention.head_count' = 3 does not divide 'llama.embedding_length' = 256")]
    [TestCase("gemma3", "gemma3.attention.value_length", 64u, "gemma3.attention.key_length")]
    public void Gguf_HeadCountsOrSizesThatDoNotFit_AreRefused_NamingTheKeys(string model, string key, uint value, string expected)
    {
        string path = GgufModelTests.Rewrite(Gguf(model), $"{model}-{key}.gguf", metadata: (k, v) => k == key ? value : v);
        AssertRefusedInOneLine(path, expected);
    }

    [Test]
    public void Gguf_UnsupportedRopeScalingType_IsRefused_NamingTheKey()
    {
        string path = GgufModelTests.Rewrite(Gguf("qwen2.5"), "qwen2-yarn.gguf", extra: w =>
        {
            w.AddString("qwen2.rope.scaling.type", "yarn");
            w.AddFloat32("qwen2.rope.scaling.factor", 4f);
        });
        AssertRefusedInOneLine(path, "qwen2.rope.scaling.type 'yarn'");
    }

    [Test]
    public void Gguf_NoRopeScalingWithAFactor_IsRefusedAsContradictory_NamingBothKeys()
    {
        string path = GgufModelTests.Rewrite(Gguf("gemma2"), "gemma2-none-factor.gguf", extra: w =>
        {
            w.AddString("gemma2.rope.scaling.type", "none");
            w.AddFloat32("gemma2.rope.scaling.factor", 8f);
        });
        AssertRefusedInOneLine(path, "gemma2.rope.scaling.type", "gemma2.rope.scaling.factor", "contradictory");
    }

    [TestCase("qwen3", "blk.1.attn_k_norm.weight")]
    [TestCase("phi3", "blk.0.attn_qkv.weight")]
    [TestCase("gemma2", "blk.0.post_ffw_norm.weight")]
    [TestCase("gemma3", "blk.5.attn_q_norm.weight")]
    [TestCase("qwen2.5", "blk.1.attn_v.bias")]
    public void Gguf_MissingTensorOfTheFamily_IsRefused_NamingIt(string model, string tensor)
    {
        string path = GgufModelTests.Rewrite(Gguf(model), $"{model}-without-{tensor}.gguf", tensor: (info, bytes) => info.Name == tensor ? null : (info.Type, bytes));
        AssertRefusedInOneLine(path, tensor);
    }

    [Test]
    public void Gguf_RopeFreqsOfTheWrongLengthOrValue_IsRefused_NamingIt()
    {
        string shortPath = GgufModelTests.Rewrite(Gguf("llama3.2"), "llama-rope-freqs-short.gguf",
            tensor: (info, bytes) => info.Name == "rope_freqs.weight" ? null : (info.Type, bytes),
            extra: w => w.AddTensor("rope_freqs.weight", [31], GgmlType.F32, s => s.Write(new byte[31 * 4])));
        AssertRefusedInOneLine(shortPath, "rope_freqs.weight", "[32]");

        string zeroPath = GgufModelTests.Rewrite(Gguf("llama3.2"), "llama-rope-freqs-zero.gguf",
            tensor: (info, bytes) => info.Name == "rope_freqs.weight" ? (info.Type, bytes.Select((b, i) => i < 4 ? (byte)0 : b).ToArray()) : (info.Type, bytes));
        AssertRefusedInOneLine(zeroPath, "rope_freqs.weight", "element 0");
    }

    [Test]
    public void Gguf_RopeFreqsOfAFamilyWithoutThem_IsRefused_NamingIt()
    {
        string path = GgufModelTests.Rewrite(Gguf("qwen2.5"), "qwen2-rope-freqs.gguf",
            extra: w => w.AddTensor("rope_freqs.weight", [32], GgmlType.F32, s => s.Write(MemoryMarshal.AsBytes(Enumerable.Repeat(1f, 32).ToArray().AsSpan()))));
        AssertRefusedInOneLine(path, "rope_freqs.weight", "unexpected");
    }

    [Test]
    public void Gguf_RopeFreqs_AreCheckedAgainstAConfigFromElsewhere()
    {
        // the GGUF's rope_freqs hold Llama 3.2's factors; a config.json with another low_freq_factor implies others
        string gguf = Gguf("llama3.2");
        string json = Edit(Model("llama3.2").HfConfigJson, j => j["rope_scaling"]!["low_freq_factor"] = 2.0);
        TransformerConfig other = ArchitectureRegistry.ForFamily("llama").ReadHfConfig(HfConfig.Load(WriteText("llama-low2.json", json))) with
        {
            RotaryPairing = RotaryPairing.Adjacent,
        };
        var e = Assert.Throws<ModelFormatException>(() => GgufModelReader.ReadWeights(GgufFile.Read(gguf), other))!;
        AssertOneLine(e.Message, Path.GetFileName(gguf), "rope_freqs.weight", "the configuration's RoPE frequency factors");
        // the file's own config reads it back
        GgufFile file = GgufFile.Read(gguf);
        Assert.That(GgufModelReader.ReadWeights(file, GgufModelReader.ReadConfig(file)).Layers, Has.Count.EqualTo(2));
    }

    [Test]
    public void Gguf_Phi3LongRopeFactors_AreRefused_NamingTheTensor()
    {
        string path = GgufModelTests.Rewrite(Gguf("phi3"), "phi3-longrope.gguf",
            extra: w => w.AddTensor("rope_factors_long.weight", [32], GgmlType.F32, s => s.Write(MemoryMarshal.AsBytes(Enumerable.Repeat(2f, 32).ToArray().AsSpan()))));
        AssertRefusedInOneLine(path, "rope_factors_long.weight", "LongRoPE");
    }

    [Test]
    public void Gguf_Gemma2SoftcapOfZero_IsRefused_NamingTheKey()
    {
        string path = GgufModelTests.Rewrite(Gguf("gemma2"), "gemma2-cap0.gguf", metadata: (k, v) => k == "gemma2.attn_logit_softcapping" ? 0f : v);
        AssertRefusedInOneLine(path, "gemma2.attn_logit_softcapping");
    }

    // ---- Hugging Face ----

    [TestCase("qwen2.5", "num_key_value_heads", 3, "'num_key_value_heads' = 3", "'num_attention_heads' = 4")]
    [TestCase("phi3", "num_attention_heads", 3, "'num_attention_heads' = 3 does not divide 'hidden_size' = 256")]
    [TestCase("gemma2", "num_key_value_heads", 0, "'num_key_value_heads' = 0")]
    public void Hf_HeadCountsThatDoNotDivide_AreRefused_NamingTheFields(string model, string key, int value, params string[] expected)
    {
        string dir = HuggingFace(model, $"{model}-{key}-{value}", j => j[key] = value);
        AssertRefusedInOneLine(dir, expected);
    }

    [TestCase("llama3.2", """{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":32}""", "'rope_scaling.rope_type' is 'yarn'")]
    [TestCase("phi3", """{"type":"longrope","short_factor":[1.0],"long_factor":[2.0]}""", "'rope_scaling.type' is 'longrope'")]
    [TestCase("qwen3", """{"rope_type":"llama3","factor":8.0}""", "'rope_scaling.rope_type' is 'llama3'")]
    [TestCase("llama3.2", """{"rope_type":"llama3","factor":8.0,"low_freq_factor":4.0,"high_freq_factor":1.0}""", "rope_scaling.low_freq_factor")]
    [TestCase("gemma3", """{"rope_type":"linear","factor":0.5}""", "rope_scaling.factor")]
    public void Hf_UnsupportedOrInvalidRopeScaling_IsRefused_NamingTheKey(string model, string scaling, string expected)
    {
        string dir = HuggingFace(model, $"{model}-rope-{scaling.Length}", j => j["rope_scaling"] = JsonNode.Parse(scaling));
        AssertRefusedInOneLine(dir, expected);
    }

    [Test]
    public void Hf_LayerTypesOfNoSlidingPattern_AreRefused_NamingTheKey()
    {
        string dir = HuggingFace("gemma3", "gemma3-layer-types", j => j["layer_types"] = new JsonArray(
            "full_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention"));
        AssertRefusedInOneLine(dir, "'layer_types'", "another arrangement");
    }

    [TestCase("qwen2.5", "use_sliding_window", "'use_sliding_window' is true")]
    [TestCase("gemma2", "hidden_activation", "'hidden_activation' is 'gelu'")]
    public void Hf_FeaturesThatAreNotSupported_AreRefused_NamingTheKey(string model, string key, string expected)
    {
        string dir = HuggingFace(model, $"{model}-{key}", j => j[key] = key == "use_sliding_window" ? true : "gelu");
        AssertRefusedInOneLine(dir, expected);
    }

    [TestCase("gemma2", "model.layers.1.post_feedforward_layernorm.weight")]
    [TestCase("qwen3", "model.layers.0.self_attn.q_norm.weight")]
    [TestCase("phi3", "model.layers.1.mlp.gate_up_proj.weight")]
    [TestCase("qwen2.5", "model.layers.0.self_attn.k_proj.bias")]
    public void Hf_MissingTensorOfTheFamily_IsRefused_NamingIt(string model, string tensor)
    {
        string dir = HuggingFace(model, $"{model}-without-{tensor}", omit: tensor);
        AssertRefusedInOneLine(dir, tensor, "missing");
    }

    // ---- GGUF export ----

    [Test]
    public void GgufWriter_RefusesWhatTheFamilysFilesCannotState()
    {
        (string Model, Func<TransformerConfig, TransformerConfig> Change, string Expected)[] cases =
        [
            ("qwen2.5", c => c with { SlidingWindow = 16 }, "SlidingWindow"),
            ("qwen3", c => c with { FinalLogitSoftcap = 30 }, "FinalLogitSoftcap"),
            ("gemma3", c => c with { LocalRotaryTheta = 5000 }, "local rotary base 10000"),
            ("gemma2", c => c with { AttentionScale = 0.125f }, "query scale"),
            ("gemma2", c => c with { SlidingWindowPattern = 3 }, "layer pattern 2"),
            ("gemma2", c => c with { AttentionLogitSoftcap = 0 }, "soft-caps"),
            ("llama3.2", c => c with { QueryKeyNorm = true }, "no per-head query/key norms"),
        ];
        foreach ((string model, Func<TransformerConfig, TransformerConfig> change, string expected) in cases)
        {
            TransformerWeights weights = Weights(model);
            if (change(weights.Config).QueryKeyNorm && !weights.Config.QueryKeyNorm) weights = WithQueryKeyNorms(weights);
            weights = weights.WithConfig(change);
            var e = Assert.Throws<AgileQuantException>(() => GgufModelWriter.Write(Path.Combine(_temp.FullPath, "refused.gguf"), weights,
                GgufVocabulary.Placeholder(weights.Config.VocabSize)), model)!;
            AssertOneLine(e.Message, $"'{weights.Config.Family}'", expected);
        }
    }

    private static TransformerWeights WithQueryKeyNorms(TransformerWeights w)
    {
        NormLayer Ones() => new(w.Config.Norm, Enumerable.Repeat(1f, w.Config.HeadDim).ToArray(), null, w.Config.NormEpsilon);
        return new TransformerWeights
        {
            Config = w.Config, TokenEmbedding = w.TokenEmbedding, StoredTokenEmbedding = w.StoredTokenEmbedding, FinalNorm = w.FinalNorm, LmHead = w.LmHead,
            Layers = w.Layers.Select(l => LayerWeights.FromParts(r => r is LayerTensor.QueryNorm or LayerTensor.KeyNorm ? Ones() : l.Norm(r), l.Linear)).ToArray(),
        };
    }

    private string Gguf(string model)
    {
        string path = Path.Combine(_temp.FullPath, model + ".gguf");
        if (!File.Exists(path)) GgufModelWriter.Write(path, Weights(model), GgufVocabulary.Placeholder(Model(model).Config.VocabSize));
        return path;
    }

    private string HuggingFace(string model, string name, Action<JsonObject>? edit = null, string? omit = null)
    {
        string dir = Directory.CreateDirectory(Path.Combine(_temp.FullPath, name)).FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), edit is null ? Model(model).HfConfigJson : Edit(Model(model).HfConfigJson, edit));
        HfTestCheckpoint.Write(Path.Combine(dir, SafeTensorsCheckpoint.SingleFileName), Model(model).Family, Weights(model), "model.", storeTiedHead: false,
            omit: omit is null ? null : name => name == omit);
        return dir;
    }

    private static string Edit(string json, Action<JsonObject> edit)
    {
        JsonObject root = JsonNode.Parse(json)!.AsObject();
        edit(root);
        return root.ToJsonString();
    }

    private string WriteText(string name, string text)
    {
        string path = Path.Combine(_temp.FullPath, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static void AssertRefusedInOneLine(string path, params string[] parts)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, new ModelLoadOptions()))!;
        AssertOneLine(e.Message, [Path.GetFileName(path), .. parts]);
    }

    private static void AssertOneLine(string message, params string[] parts)
    {
        TestContext.Out.WriteLine(message);
        Assert.That(message, Does.Not.Contain('\n'));
        foreach (string part in parts) Assert.That(message, Does.Contain(part));
    }
}
