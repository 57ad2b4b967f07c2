using AgileQuant.Core;
using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class QuantizationConfigTests
{
    private static readonly string[] ExpectedNames =
        ["FP32", "W8A16", "W4A16-RTN", "W4A16-GPTQ", "W8A8", "W4A8-RTN", "W4A8-GPTQ", "W4A4-RTN", "W4A4-GPTQ", "W4A8-MIXED", "W4A8-TRIP", "W4A8-MIXED-TRIP",
         "W4A4-ROT", "W4A4-ROT-GPTQ", "W4A8-ROT", "W4A8-ROT-GPTQ"];

    [Test]
    public void Catalog_HoldsEveryCliName()
    {
        Assert.That(QuantizationConfig.All.Select(c => c.Name), Is.EqualTo(ExpectedNames));
        foreach (string name in ExpectedNames)
            Assert.That(QuantizationConfig.Parse(name.ToLowerInvariant()).Name, Is.EqualTo(name));
        Assert.That(QuantizationConfig.Parse("W4A8-GPTQ").Description, Does.Contain("GPTQ").And.Contain("8-bit per-token"));
        Assert.That(QuantizationConfig.All.Select(c => c.Description), Has.None.Empty);
    }

    [TestCase("FP32", 32, 32, WeightRounding.None, 0)]
    [TestCase("W8A16", 8, 16, WeightRounding.RoundToNearest, 0)]
    [TestCase("W4A16-RTN", 4, 16, WeightRounding.RoundToNearest, 32)]
    [TestCase("W4A16-GPTQ", 4, 16, WeightRounding.Gptq, 32)]
    [TestCase("W8A8", 8, 8, WeightRounding.RoundToNearest, 0)]
    [TestCase("W4A8-RTN", 4, 8, WeightRounding.RoundToNearest, 32)]
    [TestCase("W4A8-GPTQ", 4, 8, WeightRounding.Gptq, 32)]
    [TestCase("W4A4-RTN", 4, 4, WeightRounding.RoundToNearest, 32)]
    [TestCase("W4A4-GPTQ", 4, 4, WeightRounding.Gptq, 32)]
    [TestCase("W4A8-MIXED", 4, 8, WeightRounding.Gptq, 32)]
    public void Parse_GivesTheNamedBitsRoundingAndGroups(string name, int wBits, int aBits, WeightRounding rounding, int group)
    {
        var c = QuantizationConfig.Parse(name);
        Assert.That((c.WeightBits, c.ActivationBits, c.Rounding, c.WeightGroupSize), Is.EqualTo((wBits, aBits, rounding, group)));
        Assert.That(c.QuantizesActivations, Is.EqualTo(aBits <= 8));
        Assert.That(c.Log2Softmax, Is.False, "log2 softmax is an option, off by default");
        Assert.That((c.EightBitQkv, c.EightBitKvCache), Is.EqualTo((aBits <= 8, aBits <= 8)));
        Assert.That(c.LowBitTokenRatio, name == "W4A8-MIXED" ? Is.GreaterThan(0) : Is.Zero);
    }

    [TestCase("W4A4-ROT", 4, WeightRounding.RoundToNearest)]
    [TestCase("W4A4-ROT-GPTQ", 4, WeightRounding.Gptq)]
    [TestCase("W4A8-ROT", 8, WeightRounding.RoundToNearest)]
    [TestCase("W4A8-ROT-GPTQ", 8, WeightRounding.Gptq)]
    public void RotatedSchemesAreTheirUnrotatedTwinsWithRotation(string name, int aBits, WeightRounding rounding)
    {
        QuantizationConfig c = QuantizationConfig.Parse(name);
        Assert.That((c.WeightBits, c.ActivationBits, c.Rounding, c.WeightGroupSize, c.Rotate), Is.EqualTo((4, aBits, rounding, 32, true)));
        Assert.That(c.Description, Does.Contain("Hadamard"));
        QuantizationConfig twin = QuantizationConfig.Parse($"W4A{aBits}-{(rounding == WeightRounding.Gptq ? "GPTQ" : "RTN")}");
        Assert.That(twin.Rotate, Is.False);
        Assert.That(c with { Name = twin.Name, Description = twin.Description, Rotate = false }, Is.EqualTo(twin));
    }

    [Test]
    public void WeightSettings_FollowTheScheme()
    {
        var s = QuantizationConfig.Parse("W4A8-GPTQ").WeightSettings();
        Assert.That((s.Bits, s.GroupSize, s.Symmetric, s.ActOrder, s.DampeningFraction, s.BlockSize),
            Is.EqualTo((4, 32, false, true, 0.01, 128)));
        var w8 = QuantizationConfig.Parse("W8A8").WeightSettings();
        Assert.That((w8.Bits, w8.GroupSize, w8.Symmetric), Is.EqualTo((8, 0, true)));
        Assert.Throws<InvalidOperationException>(() => QuantizationConfig.Parse("FP32").WeightSettings());
    }

    [Test]
    public void UnknownName_ListsTheValidNames()
    {
        var ex = Assert.Throws<AgileQuantException>(() => QuantizationConfig.Parse("W3A8"));
        Assert.That(ex!.Message, Does.Contain("W3A8"));
        foreach (string name in ExpectedNames) Assert.That(ex.Message, Does.Contain(name));
        Assert.That(QuantizationConfig.TryParse(" w4a8-rtn ", out var c) && c!.Name == "W4A8-RTN", Is.True);
        Assert.That(QuantizationConfig.TryParse(null, out _), Is.False);
    }
}
