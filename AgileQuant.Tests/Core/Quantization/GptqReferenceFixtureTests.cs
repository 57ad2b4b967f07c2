using System.Text.Json;
using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

/// <summary>
/// GPTQ codes against Fixtures/gptq_reference.json, made by Fixtures/make_gptq_reference.py: an independent
/// NumPy port of IST-DASLab/gptq fasterquant (asymmetric 4-bit, damp 0.01, static groups with act-order).
/// </summary>
public class GptqReferenceFixtureTests
{
    private sealed record Case(string Name, int GroupSize, bool ActOrder, int BlockSize, int DeadColumn, int[] Codes);

    private sealed record Fixture(int Rows, int Cols, int Samples, int Bits, float[] Weight, float[] Inputs, Case[] Cases);

    private static readonly Lazy<Fixture> Golden = new(() =>
        JsonSerializer.Deserialize<Fixture>(
            File.ReadAllText(SharedAssets.InRepo("AgileQuant.Tests/Core/Quantization/Fixtures/gptq_reference.json")),
            new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!);

    private static IEnumerable<string> CaseNames() =>
        ["g16_dynamic_dead7", "g16_actorder_dead7", "g16_actorder_block128", "perrow_actorder_block8", "perrow_block128"];

    [TestCaseSource(nameof(CaseNames))]
    public void Codes_MatchTheReferencePort(string caseName)
    {
        var f = Golden.Value;
        var c = f.Cases.Single(x => x.Name == caseName);
        var inputs = (float[])f.Inputs.Clone(); // (samples, cols)
        if (c.DeadColumn >= 0)
            for (int t = 0; t < f.Samples; t++) inputs[t * f.Cols + c.DeadColumn] = 0f;
        var h = new HessianAccumulator(f.Cols);
        h.Add(inputs, f.Samples);
        var settings = new QuantizerSettings { Bits = f.Bits, GroupSize = c.GroupSize, ActOrder = c.ActOrder, BlockSize = c.BlockSize };
        var q = GptqQuantizer.Quantize(f.Weight, f.Rows, f.Cols, h, settings);
        Assert.That(q.Codes.Select(b => (int)b), Is.EqualTo(c.Codes));
    }
}
