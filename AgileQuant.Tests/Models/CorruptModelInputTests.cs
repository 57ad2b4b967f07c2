using System.Text.Json.Nodes;
using AgileQuant.Core;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.Llama2c;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models;

/// <summary>
/// Malformed llama2.c checkpoints, Hugging Face directories whose tensors contradict their config, mismatched
/// tokenizers and over-long prompts: each refused with the library's exception and a message naming the
/// file, the tensor and what was expected versus found. (Safetensors byte-level cases are in SafeTensors/.)
/// </summary>
[TestFixture]
public class CorruptModelInputTests
{
    private static byte[] Stories260K() => File.ReadAllBytes(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"));

    private static byte[] WithHeaderField(byte[] file, int field, int value)
    {
        byte[] copy = (byte[])file.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(field * 4, 4), value);
        return copy;
    }

    [Test]
    public void Llama2cTruncatedFileIsRefused()
    {
        using var dir = new TemporaryDirectory("aq-l2c");
        byte[] file = Stories260K();
        string path = dir.Write("cut.bin", file[..(file.Length - 100)]);
        var e = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated").And.Contain(file.Length.ToString()));
    }

    [Test]
    public void Llama2cTrailingDataIsRefused()
    {
        using var dir = new TemporaryDirectory("aq-l2c");
        string path = dir.Write("long.bin", [.. Stories260K(), 1, 2, 3, 4]);
        var e = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain("describes a").And.Contain("bytes"));
    }

    [Test]
    public void Llama2cFileShorterThanHeaderIsRefused()
    {
        using var dir = new TemporaryDirectory("aq-l2c");
        string path = dir.Write("tiny.bin", new byte[10]);
        var e = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain("28-byte llama2.c header").And.Contain("10-byte"));
    }

    [TestCase(0, -64, "dim must be positive")]
    [TestCase(3, 7, "not a multiple of n_heads")]
    [TestCase(4, 3, "not a multiple of n_kv_heads")]
    [TestCase(2, 1_000_000, "describes a")]
    public void Llama2cImpossibleHeaderIsRefused(int field, int value, string expected)
    {
        using var dir = new TemporaryDirectory("aq-l2c");
        string path = dir.Write("bad.bin", WithHeaderField(Stories260K(), field, value));
        var e = Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain(expected));
    }

    [Test]
    public void TokenizerWithWrongVocabularySizeIsRefused()
    {
        string model = SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");
        string tokenizer = SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin");
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(model, new ModelLoadOptions { TokenizerPath = tokenizer }))!;
        Assert.That(e.Message, Does.Contain("512").And.Contain("vocab size"));
    }

    [Test]
    public void PromptLongerThanContextIsRefused()
    {
        LoadedModel loaded = ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions());
        var generator = new TextGenerator(loaded.Model, loaded.Tokenizer!);
        string prompt = string.Concat(Enumerable.Repeat("Once upon a time there was a cat. ", 200));
        var e = Assert.ThrowsAsync<AgileQuantException>(async () => await generator.GenerateAsync(prompt, new GenerationOptions(), null))!;
        Assert.That(e.Message, Does.Contain("context length is 512"));
        var forward = Assert.Throws<AgileQuantException>(() => loaded.Model.CreateContext().Forward(new int[513]))!;
        Assert.That(forward.Message, Does.Contain("513").And.Contain("512"));
    }

    [Test]
    public void TokenIdOutsideVocabularyIsRefused()
    {
        LoadedModel loaded = ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions());
        var e = Assert.Throws<AgileQuantException>(() => loaded.Model.CreateContext().Forward([1, 512]))!;
        Assert.That(e.Message, Does.Contain("512").And.Contain("index 1"));
    }

    /// <summary>Copies the LLaMA fixture to a temp dir with its config edited by <paramref name="edit"/>.</summary>
    private static TemporaryDirectory FixtureWithConfig(Action<JsonObject> edit)
    {
        string source = SharedAssets.Require("fixtures/llama_tiny_gqa");
        var dir = new TemporaryDirectory("aq-hf");
        File.Copy(Path.Combine(source, "model.safetensors"), Path.Combine(dir.FullPath, "model.safetensors"));
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(dir.FullPath, "config.json"), config.ToJsonString());
        return dir;
    }

    [Test]
    public void UnsupportedModelTypeIsRefused()
    {
        using TemporaryDirectory dir = FixtureWithConfig(c => c["model_type"] = "gpt_neox");
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(dir.FullPath))!;
        Assert.That(e.Message, Does.Contain("gpt_neox").And.Contain("llama").And.Contain("config.json"));
    }

    [Test]
    public void MissingTensorIsRefused()
    {
        using TemporaryDirectory dir = FixtureWithConfig(c => c["num_hidden_layers"] = 4);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(dir.FullPath))!;
        Assert.That(e.TensorName, Does.StartWith("model.layers.3."));
        Assert.That(e.Message, Does.Contain("missing"));
    }

    [Test]
    public void ExtraTensorIsRefused()
    {
        using TemporaryDirectory dir = FixtureWithConfig(c => c["num_hidden_layers"] = 2);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(dir.FullPath))!;
        Assert.That(e.TensorName, Does.StartWith("model.layers.2."));
        Assert.That(e.Message, Does.Contain("unexpected tensor"));
    }

    [Test]
    public void TensorShapeContradictingConfigIsRefused()
    {
        using TemporaryDirectory dir = FixtureWithConfig(c => c["intermediate_size"] = 128);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(dir.FullPath))!;
        Assert.That(e.TensorName, Does.Contain("mlp"));
        Assert.That(e.Message, Does.Contain("expected shape").And.Contain("128").And.Contain("172"));
    }

    [Test]
    public void MalformedConfigIsRefused()
    {
        using TemporaryDirectory dir = FixtureWithConfig(c => c["hidden_size"] = "sixty-four");
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(dir.FullPath))!;
        Assert.That(e.Message, Does.Contain("hidden_size").And.Contain("expected an integer"));
    }
}
