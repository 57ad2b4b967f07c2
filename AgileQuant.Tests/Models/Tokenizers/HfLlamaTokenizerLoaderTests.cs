using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Tests.Models.Tokenizers;

public class HfLlamaTokenizerLoaderTests
{
    [Test]
    public void LoadFromDirectory_ReadsTokenizerModel()
    {
        string model = SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.model");
        using var dir = new TempDirectory();
        File.Copy(model, Path.Combine(dir.Path, HfLlamaTokenizerLoader.ModelFileName));
        LlamaTokenizer tokenizer = HfLlamaTokenizerLoader.LoadFromDirectory(dir.Path);
        // Same vocabulary as llama2.c's tokenizer.bin export: ids of " Once" and "▁upon" agree.
        Llama2cTokenizer llama2c = Llama2cTokenizer.Load(SharedAssets.Require("assets/tokenizers/llama2-32k/tokenizer.bin"));
        IReadOnlyList<int> ids = tokenizer.EncodeToIds("Once upon a time");
        Assert.That(ids[0], Is.EqualTo(1));
        Assert.That(ids.Skip(1).Select(llama2c.GetPiece), Is.EqualTo(new[] { " Once", " upon", " a", " time" }));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo("Once upon a time"));
    }

    [Test]
    public void LoadFromDirectory_RejectsMissingOrCorruptModel()
    {
        using var dir = new TempDirectory();
        var missing = Assert.Throws<ModelFormatException>(() => HfLlamaTokenizerLoader.LoadFromDirectory(dir.Path))!;
        Assert.That(missing.Message, Does.Contain(HfLlamaTokenizerLoader.ModelFileName));
        dir.Write(HfLlamaTokenizerLoader.ModelFileName, [0xFF, 0xFF, 0xFF, 0x01, 0x02]);
        var corrupt = Assert.Throws<ModelFormatException>(() => HfLlamaTokenizerLoader.LoadFromDirectory(dir.Path))!;
        Assert.That(corrupt.FilePath, Does.EndWith(HfLlamaTokenizerLoader.ModelFileName));
    }
}
