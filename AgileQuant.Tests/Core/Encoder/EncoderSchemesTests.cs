using AgileQuant.Core;
using AgileQuant.Core.Encoder;
using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Encoder;

/// <summary>The encoder's scheme names: the catalog's, plus W8A8-GPTQ with exactly W8A8's formats.</summary>
[TestFixture]
public sealed class EncoderSchemesTests
{
    [Test]
    public void CatalogNamesPassThrough()
    {
        foreach (QuantizationConfig config in QuantizationConfig.All)
            Assert.That(EncoderSchemes.Parse(" " + config.Name.ToLowerInvariant() + " "), Is.SameAs(config));
    }

    [Test]
    public void W8A8GptqDiffersFromW8A8OnlyInRounding()
    {
        QuantizationConfig w8a8 = QuantizationConfig.Parse("W8A8"), gptq = EncoderSchemes.Parse("w8a8-gptq");
        Assert.That(gptq, Is.SameAs(EncoderSchemes.W8A8Gptq));
        Assert.That(gptq.Rounding, Is.EqualTo(WeightRounding.Gptq));
        Assert.That(gptq.ActOrder, Is.True);
        // everything that decides what is stored in 8 bits is W8A8's
        Assert.That(gptq with { Name = w8a8.Name, Description = w8a8.Description, Rounding = w8a8.Rounding, ActOrder = w8a8.ActOrder }, Is.EqualTo(w8a8));
        Assert.That(gptq.WeightSettings() with { ActOrder = false }, Is.EqualTo(w8a8.WeightSettings()));
    }

    [Test]
    public void UnknownNameIsRefusedWithTheChoices()
    {
        var e = Assert.Throws<AgileQuantException>(() => EncoderSchemes.Parse("W8A8-AWQ"))!;
        Assert.That(e.Message, Does.Contain("W8A8-GPTQ").And.Contain("W4A8-GPTQ"));
        Assert.Throws<ArgumentNullException>(() => EncoderSchemes.Parse(null!));
    }
}
