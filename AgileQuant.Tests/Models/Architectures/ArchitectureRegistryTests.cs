using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.Architectures;

/// <summary>
/// The registry of architecture descriptions: every family is found by its name in each format and an unknown one is
/// refused with a one-line error naming it; every family's seeded random model goes through every format it has
/// (Hugging Face safetensors written here from the description's names, quantized checkpoint, GGUF) and comes back
/// tensor for tensor. A fused-QKV / fused-gate-up family defined here checks the concatenated layout that Phi-3 uses.
/// </summary>
[TestFixture]
public class ArchitectureRegistryTests
{
    private TemporaryDirectory _temp = null!;

    [OneTimeSetUp]
    public void CreateDirectory() => _temp = new TemporaryDirectory("aq-arch-");

    [OneTimeTearDown]
    public void DeleteDirectory() => _temp.Dispose();

    public static IEnumerable<ArchitectureDescription> Families => ArchitectureRegistry.All;

    /// <summary>The registered families plus the fused test family.</summary>
    public static IEnumerable<ArchitectureDescription> AllFamilies => ArchitectureRegistry.All.Append(FusedTestArchitecture.Instance);

    public static IEnumerable<ArchitectureDescription> GgufFamilies => AllFamilies.Where(f => f.GgufArchitecture is not null);

    public static IEnumerable<ArchitectureDescription> RotaryGgufFamilies => GgufFamilies.Where(f => f.Positions == PositionKind.Rotary);

    public static IEnumerable<ArchitectureDescription> FamiliesWithoutGguf => ArchitectureRegistry.All.Where(f => f.GgufArchitecture is null);

    [Test]
    public void NamesOfFamilies_AreUniqueInEveryFormat()
    {
        IReadOnlyList<ArchitectureDescription> all = ArchitectureRegistry.All;
        Assert.That(all.Select(a => a.Family), Is.Unique);
        Assert.That(all.SelectMany(a => a.HfModelTypes), Is.Unique);
        Assert.That(all.Select(a => a.GgufArchitecture).OfType<string>(), Is.Unique);
        Assert.That(all.Select(a => a.Family), Is.SupersetOf(new[] { "llama", "opt", "bloom" }));
    }

    [TestCaseSource(nameof(Families))]
    public void Family_IsFoundByItsNameInEveryFormat(ArchitectureDescription family)
    {
        Assert.That(ArchitectureRegistry.ForFamily(family.Family), Is.SameAs(family));
        foreach (string modelType in family.HfModelTypes)
            Assert.That(ArchitectureRegistry.ForHfConfig(HfConfigWithModelType(modelType)), Is.SameAs(family), modelType);
        if (family.GgufArchitecture is { } architecture)
        {
            Assert.That(ArchitectureRegistry.ForGguf(GgufWithArchitecture(architecture)), Is.SameAs(family));
            Assert.That(family.GgufKeyPrefix, Is.EqualTo(architecture + "."));
        }
    }

    [TestCaseSource(nameof(AllFamilies))]
    public void EveryFormat_NamesEveryTensorOnce(ArchitectureDescription family)
    {
        TransformerConfig config = RandomModel(family, seed: 0).Config;
        foreach ((string format, TensorNameMap? names) in new[] { ("hf", family.HfNames), ("gguf", family.GgufNames), ("checkpoint", family.CheckpointNames) })
        {
            if (names is null) continue;
            foreach (LayerTensor role in LayerTensors.All.Where(r => r.IsRequiredBy(config)))
                Assert.That(names.Stores(role), $"{format} names no {role}");
            string[] layerNames = [.. names.Layers.Values, .. names.Fused.Select(f => f.Name)];
            Assert.That(layerNames, Is.Unique, format);
            Assert.That(names.Globals.Values, Is.Unique, format);
            Assert.That(names.Fused.SelectMany(f => f.Parts).Where(names.Layers.ContainsKey), Is.Empty, $"{format}: a fused part also has a name of its own");
            Assert.That(names.InLayer(0, "x"), Is.Not.EqualTo(names.InLayer(1, "x")), format);
        }
    }

    [Test]
    public void UnknownFamily_IsRefusedInEveryFormat_WithOneLineNamingIt()
    {
        var byName = Assert.Throws<AgileQuantException>(() => ArchitectureRegistry.ForFamily("falcon"))!;
        AssertOneLineNaming(byName.Message, "'falcon'", "llama");

        var hf = Assert.Throws<ModelFormatException>(() => ArchitectureRegistry.ForHfConfig(HfConfigWithModelType("mamba")))!;
        AssertOneLineNaming(hf.Message, "'mamba'", "config.json");

        var gguf = Assert.Throws<ModelFormatException>(() => ArchitectureRegistry.ForGguf(GgufWithArchitecture("mamba")))!;
        AssertOneLineNaming(gguf.Message, "found 'mamba'", "general.architecture 'llama'");

        TransformerWeights unknown = RandomModel(ArchitectureRegistry.ForFamily("llama"), seed: 1).WithConfig(c => c with { Family = "falcon" });
        var checkpoint = Assert.Throws<AgileQuantException>(() => QuantizedCheckpointWriter.Write(Path.Combine(_temp.FullPath, "falcon.safetensors"), unknown, "FP32"))!;
        AssertOneLineNaming(checkpoint.Message, "'falcon'");
        var export = Assert.Throws<AgileQuantException>(() => GgufModelWriter.Write(Path.Combine(_temp.FullPath, "falcon.gguf"), unknown, GgufVocabulary.Placeholder(unknown.Config.VocabSize)))!;
        AssertOneLineNaming(export.Message, "'falcon'");
    }

    [TestCaseSource(nameof(FamiliesWithoutGguf))]
    public void FamilyWithoutGgufForm_IsRefusedByTheGgufWriter(ArchitectureDescription family)
    {
        TransformerWeights weights = RandomModel(family, seed: 2);
        var e = Assert.Throws<AgileQuantException>(() => GgufModelWriter.Write(Path.Combine(_temp.FullPath, "none.gguf"), weights, GgufVocabulary.Placeholder(weights.Config.VocabSize)))!;
        AssertOneLineNaming(e.Message, $"'{family.Family}'");
    }

    [TestCaseSource(nameof(AllFamilies))]
    public void RandomModel_RoundTripsThroughHuggingFaceNames(ArchitectureDescription family)
    {
        foreach (string prefix in family.HfBasePrefixes)
            foreach (bool options in new[] { false, true })
            {
                TransformerWeights weights = RandomModel(family, seed: 3, optionalBiases: options, tiedHead: options);
                string path = WriteHf(family, weights, prefix, $"{family.Family}-{prefix.Length}-{options}.safetensors", storeTiedHead: options);
                using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(path);
                TransformerWeights read = HfTensorReader.ReadWeights(family, weights.Config, checkpoint);
                AssertSameWeights(read, weights, $"{family.Family} under '{prefix}', options {options}");
            }
    }

    [TestCaseSource(nameof(Families))]
    public void RandomModel_RoundTripsThroughQuantizedCheckpointNames(ArchitectureDescription family)
    {
        TransformerWeights weights = RandomModel(family, seed: 4, optionalBiases: true);
        string path = Path.Combine(_temp.FullPath, family.Family + ".safetensors");
        QuantizedCheckpointWriter.Write(path, weights, "FP32");
        QuantizedCheckpoint read = QuantizedCheckpointReader.Load(path);
        Assert.That(read.Weights.Config, Is.EqualTo(weights.Config));
        AssertSameWeights(read.Weights, weights, family.Family);
    }

    [TestCaseSource(nameof(GgufFamilies))]
    public void RandomModel_InTheFamilysGgufLayout_RoundTripsThroughGgufNames(ArchitectureDescription family)
    {
        foreach (bool options in new[] { false, true })
        {
            TransformerWeights weights = RandomModel(family, seed: 5, optionalBiases: options, tiedHead: options, pairing: family.GgufRotaryPairing);
            (TransformerConfig config, TransformerWeights read) = GgufRoundTrip(family, weights, $"{family.Family}-{options}.gguf");
            Assert.That(config, Is.EqualTo(weights.Config with { BosTokenId = config.BosTokenId, EosTokenId = config.EosTokenId }));
            AssertSameWeights(read, weights, $"{family.Family}, options {options}");
        }
    }

    [TestCaseSource(nameof(RotaryGgufFamilies))]
    public void RandomModel_InTheOtherQkLayout_KeepsItsLogitsThroughGguf(ArchitectureDescription family)
    {
        RotaryPairing other = family.GgufRotaryPairing == RotaryPairing.Adjacent ? RotaryPairing.RotateHalf : RotaryPairing.Adjacent;
        TransformerWeights weights = RandomModel(family, seed: 6, optionalBiases: true, pairing: other);
        (TransformerConfig config, TransformerWeights read) = GgufRoundTrip(family, weights, $"{family.Family}-permuted.gguf");
        Assert.That(config.RotaryPairing, Is.EqualTo(family.GgufRotaryPairing));
        // Q/K rows and biases are permuted to the other pairing: the same function, so the same logits up to summation order.
        int[] tokens = [1, 5, 9, 2, 7, 3, 11, 4];
        float[] expected = new TransformerModel(weights, TestKernels.Default).CreateContext().Forward(tokens, allLogits: true);
        float[] actual = new TransformerModel(read, TestKernels.Default).CreateContext().Forward(tokens, allLogits: true);
        Assert.That(read.Layers[0].Query.Weight is Fp32Matrix q && !q.Data.SequenceEqual(((Fp32Matrix)weights.Layers[0].Query.Weight).Data), "Q rows were permuted");
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(1e-5 + 1e-5 * Math.Abs(expected[i])), $"logit {i}");
    }

    [Test]
    public void HfFixtures_ReadThroughTheirDescriptions_WithTheDescriptionsTraits()
    {
        foreach ((string fixture, string family) in new[] { ("llama_tiny_gqa", "llama"), ("opt_tiny_125m_style", "opt"), ("bloom_tiny", "bloom") })
        {
            HfConfig config = HfConfig.Load(Path.Combine(SharedAssets.Require("fixtures/" + fixture), "config.json"));
            ArchitectureDescription description = ArchitectureRegistry.ForHfConfig(config);
            TransformerConfig c = description.ReadHfConfig(config);
            Assert.That((description.Family, c.Family), Is.EqualTo((family, family)), fixture);
            Assert.That((c.Norm, c.Positions, c.Mlp, c.EmbeddingNorm), Is.EqualTo((description.Norm, description.Positions, description.Mlp, description.EmbeddingNorm)), fixture);
        }
    }

    private (TransformerConfig Config, TransformerWeights Weights) GgufRoundTrip(ArchitectureDescription family, TransformerWeights weights, string name)
    {
        string path = Path.Combine(_temp.FullPath, name);
        GgufModelWriter.Write(path, weights, family, GgufVocabulary.Placeholder(weights.Config.VocabSize), null);
        GgufFile file = GgufFile.Read(path);
        Assert.That(file.GetString("general.architecture"), Is.EqualTo(family.GgufArchitecture));
        Assert.That(file.GetInteger(family.GgufKeyPrefix + "block_count"), Is.EqualTo(weights.Config.NumLayers));
        TransformerConfig config = GgufModelReader.ReadConfig(file, family);
        return (config, GgufModelReader.ReadWeights(file, config, family));
    }

    private static void AssertOneLineNaming(string message, params string[] parts)
    {
        Assert.That(message, Does.Not.Contain('\n'));
        foreach (string part in parts) Assert.That(message, Does.Contain(part));
    }

    private HfConfig HfConfigWithModelType(string modelType)
    {
        string dir = Directory.CreateDirectory(Path.Combine(_temp.FullPath, "hf-" + modelType)).FullName;
        string path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, $$"""{"model_type": "{{modelType}}"}""");
        return HfConfig.Load(path);
    }

    private GgufFile GgufWithArchitecture(string architecture)
    {
        var writer = new GgufWriter();
        writer.AddString("general.architecture", architecture);
        string path = Path.Combine(_temp.FullPath, "arch-" + architecture + ".gguf");
        writer.Write(path);
        return GgufFile.Read(path);
    }

    /// <summary>
    /// A seeded FP32 model of <paramref name="family"/>: 2 layers, hidden 32, 4 heads (2 KV heads unless a fused tensor
    /// interleaves by head), intermediate 48, vocab 260 (the placeholder GGUF vocabulary needs the 256 byte tokens); biases as the family has them (optional ones when
    /// <paramref name="optionalBiases"/>), LayerNorm biases, OPT-style embedding projections when the family names them.
    /// </summary>
    internal static TransformerWeights RandomModel(ArchitectureDescription family, int seed, bool optionalBiases = false, bool tiedHead = false,
        RotaryPairing pairing = RotaryPairing.RotateHalf)
    {
        var random = new Random(seed);
        float[] Values(int count, float offset = 0) => Enumerable.Range(0, count).Select(_ => offset + (random.NextSingle() * 2 - 1) * 0.2f).ToArray();
        bool interleaved = new[] { family.HfNames, family.GgufNames }.Any(n => n?.Fused.Any(f => f.Layout == FusedLayout.InterleavedByHead) == true);
        bool projected = family.HfNames.Global(ModelTensor.ProjectIn) is not null;
        var c = new TransformerConfig
        {
            Family = family.Family, VocabSize = 260, HiddenSize = 32, IntermediateSize = 48, NumLayers = 2, NumHeads = 4, NumKvHeads = interleaved ? 4 : 2,
            MaxSequenceLength = 16, Norm = family.Norm, NormEpsilon = 1e-5f, Positions = family.Positions, RotaryPairing = pairing, RotaryTheta = 500f,
            LearnedPositionOffset = family.Positions == PositionKind.Learned ? 2 : 0, Mlp = family.Mlp, EmbeddingNorm = family.EmbeddingNorm,
            EmbeddingSize = projected ? 24 : 0, QueryKeyNorm = family.QueryKeyNorm, PostNorms = family.PostNorms,
        };
        c = WithTraitsOfItsGgufFiles(family, c);
        int d = c.HiddenSize, e = c.EmbeddingWidth;
        NormLayer Norm(int width) => new(c.Norm, Values(width, 1), c.Norm == NormKind.LayerNorm ? Values(width) : null, c.NormEpsilon);
        bool Bias(LayerTensor role) => family.Bias(role) == BiasRule.Always || family.Bias(role) == BiasRule.Optional && optionalBiases;
        LayerWeights Layer() => LayerWeights.FromParts(role => role.IsRequiredBy(c) ? Norm(role.NormWidth(c)) : null, role =>
        {
            if (!role.IsRequiredBy(c)) return null;
            (int rows, int cols) = role.Shape(c);
            return new LinearLayer(new Fp32Matrix(Values(rows * cols), rows, cols), Bias(role) ? Values(rows) : null);
        });
        float[] embedding = Values(c.VocabSize * e);
        bool tied = family.Head == HeadTying.Tied || tiedHead;
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            PositionEmbedding = c.Positions == PositionKind.Learned ? Values((c.MaxSequenceLength + c.LearnedPositionOffset) * d) : null,
            EmbeddingNorm = c.EmbeddingNorm ? Norm(d) : null,
            ProjectIn = projected ? new LinearLayer(new Fp32Matrix(Values(d * e), d, e)) : null,
            Layers = [Layer(), Layer()],
            FinalNorm = Norm(d),
            ProjectOut = projected ? new LinearLayer(new Fp32Matrix(Values(e * d), e, d)) : null,
            LmHead = new LinearLayer(new Fp32Matrix(tied ? embedding : Values(c.VocabSize * e), c.VocabSize, e)),
        };
    }

    /// <summary>
    /// <paramref name="c"/> with what llama.cpp applies to every GGUF file of the family (Gemma 2: soft-caps and sliding-window
    /// layers, Gemma 3: sliding-window layers with their own rotary base; both: the √d embedding scale).
    /// </summary>
    private static TransformerConfig WithTraitsOfItsGgufFiles(ArchitectureDescription family, TransformerConfig c) => family switch
    {
        Gemma2Architecture => c with
        {
            SlidingWindow = 8, SlidingWindowPattern = 2, AttentionLogitSoftcap = 50f, FinalLogitSoftcap = 30f, EmbeddingScale = MathF.Sqrt(c.HiddenSize),
        },
        Gemma3Architecture => c with { SlidingWindow = 8, SlidingWindowPattern = 6, LocalRotaryTheta = 10000f, EmbeddingScale = MathF.Sqrt(c.HiddenSize) },
        _ => c,
    };

    private string WriteHf(ArchitectureDescription family, TransformerWeights weights, string prefix, string name, bool storeTiedHead)
    {
        string path = Path.Combine(_temp.FullPath, name);
        HfTestCheckpoint.Write(path, family, weights, prefix, storeTiedHead);
        return path;
    }

    private static void AssertSameWeights(TransformerWeights actual, TransformerWeights expected, string what)
    {
        Assert.That(actual.TokenEmbeddingAsFloats(), Is.EqualTo(expected.TokenEmbeddingAsFloats()), $"{what}: token embedding");
        Assert.That(actual.PositionEmbedding, Is.EqualTo(expected.PositionEmbedding), $"{what}: position embedding");
        AssertSameNorm(actual.EmbeddingNorm, expected.EmbeddingNorm, $"{what}: embedding norm");
        AssertSameLinear(actual.ProjectIn, expected.ProjectIn, $"{what}: project_in");
        AssertSameNorm(actual.FinalNorm, expected.FinalNorm, $"{what}: final norm");
        AssertSameLinear(actual.ProjectOut, expected.ProjectOut, $"{what}: project_out");
        AssertSameLinear(actual.LmHead, expected.LmHead, $"{what}: LM head");
        bool expectedTied = ReferenceEquals(((Fp32Matrix)expected.LmHead.Weight).Data, expected.TokenEmbedding);
        Assert.That(actual.LmHead.Weight is Fp32Matrix head && ReferenceEquals(head.Data, actual.TokenEmbedding), Is.EqualTo(expectedTied), $"{what}: head tying");
        Assert.That(actual.Layers, Has.Count.EqualTo(expected.Layers.Count), what);
        for (int i = 0; i < expected.Layers.Count; i++)
            foreach (LayerTensor role in LayerTensors.All)
            {
                if (role.IsNorm()) AssertSameNorm(actual.Layers[i].Norm(role), expected.Layers[i].Norm(role), $"{what}: layer {i} {role}");
                else AssertSameLinear(actual.Layers[i].Linear(role), expected.Layers[i].Linear(role), $"{what}: layer {i} {role}");
            }
    }

    private static void AssertSameNorm(NormLayer? actual, NormLayer? expected, string what)
    {
        Assert.That(actual is null, Is.EqualTo(expected is null), what);
        if (actual is null || expected is null) return;
        Assert.That((actual.Kind, actual.Epsilon), Is.EqualTo((expected.Kind, expected.Epsilon)), what);
        Assert.That(actual.Weight, Is.EqualTo(expected.Weight), what + " weight");
        Assert.That(actual.Bias, Is.EqualTo(expected.Bias), what + " bias");
    }

    private static void AssertSameLinear(LinearLayer? actual, LinearLayer? expected, string what)
    {
        Assert.That(actual is null, Is.EqualTo(expected is null), what);
        if (actual is null || expected is null) return;
        Assert.That(actual.Weight, Is.TypeOf<Fp32Matrix>(), what);
        Assert.That((actual.Weight.Rows, actual.Weight.Cols), Is.EqualTo((expected.Weight.Rows, expected.Weight.Cols)), what + " shape");
        Assert.That(((Fp32Matrix)actual.Weight).Data, Is.EqualTo(((Fp32Matrix)expected.Weight).Data), what + " weight");
        Assert.That(actual.Bias, Is.EqualTo(expected.Bias), what + " bias");
    }

    /// <summary>
    /// A Phi-3-like family that exists only here: Q/K/V in one concatenated tensor and gate/up in another, in Hugging Face
    /// and in GGUF (where, as in llama.cpp's phi3, gate and up share the name <c>ffn_up</c>), grouped-query attention,
    /// Q/K/V biases as Qwen2 has them, and rotate-half Q/K rows in GGUF (NEOX RoPE).
    /// </summary>
    private sealed class FusedTestArchitecture : ArchitectureDescription
    {
        // Before Instance: static initializers run in order, and the instance's name maps read these.
        private static readonly LayerTensor[] Qkv = [LayerTensor.Query, LayerTensor.Key, LayerTensor.Value];
        private static readonly LayerTensor[] GateUp = [LayerTensor.Gate, LayerTensor.Up];

        public static FusedTestArchitecture Instance { get; } = new();

        public override string Family => "fused-test";

        public override IReadOnlyList<string> HfModelTypes { get; } = ["fused-test"];

        public override string? GgufArchitecture => "fused-test";

        public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model."];

        public override TensorNameMap HfNames { get; } = new()
        {
            LayerPrefix = "layers.{0}.",
            Globals = new Dictionary<ModelTensor, string>
            {
                [ModelTensor.TokenEmbedding] = "embed_tokens", [ModelTensor.FinalNorm] = "norm", [ModelTensor.LmHead] = "lm_head",
            },
            Layers = new Dictionary<LayerTensor, string>
            {
                [LayerTensor.AttentionNorm] = "input_layernorm", [LayerTensor.Output] = "self_attn.o_proj",
                [LayerTensor.MlpNorm] = "post_attention_layernorm", [LayerTensor.Down] = "mlp.down_proj",
            },
            Fused = [new FusedTensor("self_attn.qkv_proj", FusedLayout.Concatenated, Qkv), new FusedTensor("mlp.gate_up_proj", FusedLayout.Concatenated, GateUp)],
        };

        public override TensorNameMap? GgufNames { get; } = TensorNameMap.Gguf with
        {
            Layers = TensorNameMap.Gguf.Layers.Where(p => !Qkv.Contains(p.Key) && !GateUp.Contains(p.Key)).ToDictionary(),
            Fused = [new FusedTensor("attn_qkv", FusedLayout.Concatenated, Qkv), new FusedTensor("ffn_up", FusedLayout.Concatenated, GateUp)],
        };

        public override NormKind Norm => NormKind.RmsNorm;

        public override PositionKind Positions => PositionKind.Rotary;

        public override MlpKind Mlp => MlpKind.SwiGlu;

        public override HeadTying Head => HeadTying.TiedWhenAbsent;

        public override BiasRule Bias(LayerTensor linear) => Qkv.Contains(linear) ? BiasRule.Always : BiasRule.None;

        public override TransformerConfig ReadHfConfig(HfConfig config) => throw new NotSupportedException("The test family is built in code.");
    }
}

internal static class TransformerWeightsTestExtensions
{
    /// <summary><paramref name="weights"/> with its config changed by <paramref name="change"/>.</summary>
    public static TransformerWeights WithConfig(this TransformerWeights weights, Func<TransformerConfig, TransformerConfig> change) => new()
    {
        Config = change(weights.Config),
        TokenEmbedding = weights.TokenEmbedding,
        StoredTokenEmbedding = weights.StoredTokenEmbedding,
        PositionEmbedding = weights.PositionEmbedding,
        EmbeddingNorm = weights.EmbeddingNorm,
        ProjectIn = weights.ProjectIn,
        Layers = weights.Layers,
        FinalNorm = weights.FinalNorm,
        ProjectOut = weights.ProjectOut,
        LmHead = weights.LmHead,
    };
}
