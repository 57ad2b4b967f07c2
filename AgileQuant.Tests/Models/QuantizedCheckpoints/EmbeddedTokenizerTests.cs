using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.QuantizedCheckpoints;

/// <summary>A quantized checkpoint carries its tokenizer files byte for byte and its end tokens; bad file names are refused.</summary>
[TestFixture]
public class EmbeddedTokenizerTests
{
    private static LoadedModel Stories() => ModelLoader.Load(SharedAssets.InRepo("assets/models/stories260K/stories260K.bin"), new ModelLoadOptions());

    [Test]
    public void TheCheckpointCarriesTheTokenizerFileAndEndTokensAndLoadsAlone()
    {
        using LoadedModel source = Stories();
        using var dir = new TemporaryDirectory("aq-embedded-tok-");
        string path = Path.Combine(dir.FullPath, "q.safetensors");
        TransformerModel quantized = ModelQuantizer.Quantize(source.Model, QuantizationConfig.Parse("W8A8"), new ModelQuantizationOptions());
        EmbeddedTokenizer carried = EmbeddedTokenizer.From(source)!;
        QuantizedCheckpointWriter.Write(path, quantized, "W8A8", null, carried);

        QuantizedCheckpoint checkpoint = QuantizedCheckpointReader.Load(path);
        Assert.That(checkpoint.Tokenizer!.Files.Single().Name, Is.EqualTo("tok512.bin"));
        Assert.That(checkpoint.Tokenizer.Files.Single().Contents, Is.EqualTo(File.ReadAllBytes(SharedAssets.InRepo("assets/models/stories260K/tok512.bin"))));
        Assert.That(checkpoint.Tokenizer.EndTokenIds, Is.EqualTo(new[] { 2, 1 }));

        using LoadedModel loaded = ModelLoader.Load(path, new ModelLoadOptions());
        Assert.That(loaded.Tokenizer, Is.Not.Null, "no tokenizer file beside the checkpoint: the carried one is used");
        Assert.That(loaded.Tokenizer!.EncodeToIds("Once upon a time"), Is.EqualTo(source.Tokenizer!.EncodeToIds("Once upon a time")));
        Assert.That(loaded.EndTokenIds, Is.EqualTo(new[] { 2, 1 }));
    }

    [TestCase("../tok512.bin")]
    [TestCase("sub/tok512.bin")]
    [TestCase("")]
    public void FileNamesThatAreNotPlainAreRefused(string name)
    {
        using LoadedModel source = Stories();
        using var dir = new TemporaryDirectory("aq-embedded-tok-");
        var bad = new EmbeddedTokenizer([new EmbeddedTokenizerFile(name, [1, 2, 3])], false, [2]);
        Assert.That(() => QuantizedCheckpointWriter.Write(Path.Combine(dir.FullPath, "q.safetensors"), source.Model, "FP32", null, bad),
            Throws.InstanceOf<ModelFormatException>().With.Message.Contain("file name"));
    }
}
