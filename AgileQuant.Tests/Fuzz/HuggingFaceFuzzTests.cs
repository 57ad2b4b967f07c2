using System.Text;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.Architectures;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the Hugging Face side: <c>config.json</c> alone (parse, family mapping, validation, implied size), the
/// whole model-directory loader (<see cref="ModelLoader.Load"/> on a tiny LLaMA directory, then one token), and the
/// shard index JSON. Every input must succeed or raise the library's <see cref="AgileQuantException"/>
/// (<see cref="ModelFormatException"/> for file problems).
/// </summary>
[Category("Fuzz")]
public sealed class HuggingFaceFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-hf-", inMemory: true)
{
    private static readonly string[] SizeKeys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "vocab_size", "max_position_embeddings", "model_type", "rms_norm_eps", "rope_theta", "ffn_dim",
        "word_embed_proj_dim", "n_head", "n_layer", "seq_length", "rope_scaling", "hidden_act", "tie_word_embeddings"];

    /// <summary>A budget far above the tiny seeds but far below what the absurd sizes imply.</summary>
    private const long Budget = 1 << 24;

    /// <summary>Config of the tiny LLaMA below (GQA: 2 heads, 1 key/value head).</summary>
    public static string LlamaConfig =>
        """
        {"model_type":"llama","architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":12,"num_hidden_layers":2,
         "num_attention_heads":2,"num_key_value_heads":1,"vocab_size":16,"max_position_embeddings":16,"rms_norm_eps":1e-6,
         "rope_theta":10000.0,"hidden_act":"silu","tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"float32"}
        """;

    /// <summary>Config seeds: the tiny LLaMA plus OPT and BLOOM configs (their mapping and validation only).</summary>
    public static List<byte[]> ConfigSeeds() =>
    [
        Encoding.UTF8.GetBytes(LlamaConfig),
        """{"model_type":"opt","hidden_size":16,"ffn_dim":32,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":50,"max_position_embeddings":32,"word_embed_proj_dim":8,"do_layer_norm_before":true,"activation_function":"relu","enable_bias":true}"""u8.ToArray(),
        """{"model_type":"bloom","hidden_size":16,"n_head":4,"n_layer":2,"vocab_size":50,"layer_norm_epsilon":1e-5,"seq_length":32,"apply_residual_connection_post_layernorm":false}"""u8.ToArray(),
    ];

    /// <summary>The tiny LLaMA's weights (F32, BF16 and F16 tensors) matching <see cref="LlamaConfig"/>.</summary>
    public static byte[] LlamaWeights()
    {
        const int d = 8, f = 12, kv = 4, v = 16;
        var writer = new SafeTensorsWriter();
        var random = new Random(11);
        float[] Values(int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        writer.AddFloat32("model.embed_tokens.weight", [v, d], Values(v * d));
        for (int layer = 0; layer < 2; layer++)
        {
            string l = $"model.layers.{layer}.";
            writer.AddFloat32(l + "input_layernorm.weight", [d], Values(d));
            writer.AddFloat32(l + "post_attention_layernorm.weight", [d], Values(d));
            writer.AddFloat32(l + "self_attn.q_proj.weight", [d, d], Values(d * d), SafeTensorsDType.BF16);
            writer.AddFloat32(l + "self_attn.k_proj.weight", [kv, d], Values(kv * d), SafeTensorsDType.BF16);
            writer.AddFloat32(l + "self_attn.v_proj.weight", [kv, d], Values(kv * d));
            writer.AddFloat32(l + "self_attn.o_proj.weight", [d, d], Values(d * d));
            writer.AddFloat32(l + "mlp.gate_proj.weight", [f, d], Values(f * d), SafeTensorsDType.F16);
            writer.AddFloat32(l + "mlp.up_proj.weight", [f, d], Values(f * d), SafeTensorsDType.F16);
            writer.AddFloat32(l + "mlp.down_proj.weight", [d, f], Values(d * f));
        }
        writer.AddFloat32("model.norm.weight", [d], Values(d));
        writer.AddFloat32("lm_head.weight", [v, d], Values(v * d));
        using var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    private static bool IsLibraryError(Exception e) => e is AgileQuantException;

    [Test]
    public void ConfigReaderOnlyMapsOrRaisesLibraryExceptions()
    {
        string path = Path.Combine(Temp.FullPath, "config.json");
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 31_000, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run(ConfigSeeds(),
            [new JsonStructureMutator(SizeKeys), new JsonStructureMutator(SizeKeys), new ByteMutator()],
            FuzzRunner.ThroughFile(path, p =>
            {
                HfConfig config = HfConfig.Load(p);
                TransformerConfig runtime = ArchitectureRegistry.ForHfConfig(config).ReadHfConfig(config);
                runtime.Validate();
                WeightMemoryBudget.Enforce(p, runtime, Budget);
            }),
            IsLibraryError, options, message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("config.json", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(20));
        Assert.That(report.Messages.Any(m => m.Contains("loading budget")), "absurd sizes must be refused by the budget");
    }

    [Test]
    public void DirectoryLoaderOnlyLoadsOrRaisesLibraryExceptions()
    {
        // The config is mutated; the weights stay the tiny LLaMA's, so a lying config meets real tensors.
        Temp.Write(SafeTensorsCheckpoint.SingleFileName, LlamaWeights());
        string path = Path.Combine(Temp.FullPath, "config.json");
        var loadOptions = new ModelLoadOptions { MaxWeightBytes = Budget };
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 52_000, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run([Encoding.UTF8.GetBytes(LlamaConfig)],
            [new JsonStructureMutator(SizeKeys), new JsonStructureMutator(SizeKeys), new ByteMutator()],
            FuzzRunner.ThroughFile(path, written =>
            {
                LoadedModel loaded = ModelLoader.Load(Temp.FullPath, loadOptions);
                TransformerConfig c = loaded.Model.Config;
                // One token when the context's KV cache is small (a huge max_position_embeddings is legal, just big).
                if ((long)c.MaxSequenceLength * c.KvDim * c.NumLayers <= 1 << 20)
                    Assert.That(loaded.Model.CreateContext().Forward([c.VocabSize - 1]), Has.Length.EqualTo(c.VocabSize));
            }),
            IsLibraryError, options, message => FuzzRunner.MaskMessage(message.Replace(Temp.FullPath, "<dir>")));
        FuzzCampaign.Check("model directory (ModelLoader.Load)", report);
        Assert.That(report.Accepted, Is.GreaterThan(0), "the unmutated directory must load");
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(15));
    }

    [Test]
    public void ShardIndexOnlyOpensOrRaisesModelFormatException()
    {
        const string shardA = "model-00001-of-00002.safetensors", shardB = "model-00002-of-00002.safetensors";
        List<byte[]> shards = SafeTensorsFuzzTests.Seeds();
        Temp.Write(shardA, shards[0]);
        Temp.Write(shardB, shards[3]);
        byte[] index = Encoding.UTF8.GetBytes(
            $"{{\"metadata\":{{\"total_size\":43}},\"weight_map\":{{\"w\":\"{shardA}\",\"b\":\"{shardA}\",\"odd\":\"{shardB}\",\"tail\":\"{shardB}\"}}}}");
        string indexPath = Path.Combine(Temp.FullPath, SafeTensorsCheckpoint.IndexFileName);
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 77, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run([index], [new JsonStructureMutator("weight_map", "metadata"), new ByteMutator()],
            FuzzRunner.ThroughFile(indexPath, written =>
            {
                using var checkpoint = SafeTensorsCheckpoint.Open(Temp.FullPath);
                foreach (SafeTensorInfo info in checkpoint.Tensors) _ = checkpoint.GetBytes(info.Name).Length;
            }),
            e => e is ModelFormatException, options, message => FuzzRunner.MaskMessage(message.Replace(Temp.FullPath, "<dir>")));
        FuzzCampaign.Check("safetensors shard index", report);
        Assert.That(report.Accepted, Is.GreaterThan(0), "the unmutated index must open");
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(8));
    }

    [Test]
    public void SeedDirectoryLoads()
    {
        Temp.Write(SafeTensorsCheckpoint.SingleFileName, LlamaWeights());
        Temp.Write("config.json", Encoding.UTF8.GetBytes(LlamaConfig));
        LoadedModel loaded = ModelLoader.Load(Temp.FullPath, new ModelLoadOptions());
        Assert.That(loaded.Model.CreateContext().Forward([3, 4]), Has.Length.EqualTo(16));
    }
}
