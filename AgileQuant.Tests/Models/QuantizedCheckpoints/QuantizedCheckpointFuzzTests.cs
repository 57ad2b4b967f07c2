using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgileQuant.Models;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Fuzz;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Models.QuantizedCheckpoints;

/// <summary>Mutated quantized checkpoints either load or are refused with a ModelFormatException naming the file.</summary>
[TestFixture]
[Category("Fuzz")]
public sealed class QuantizedCheckpointFuzzTests() : TemporaryDirectoryFixture("aq-qckpt-fuzz-", inMemory: true)
{
    [Test]
    public void ReaderOnlyAcceptsOrRaisesModelFormatException()
    {
        string seedPath = Path.Combine(Temp.FullPath, "seed.safetensors"), path = Path.Combine(Temp.FullPath, "fuzz.safetensors");
        QuantizedCheckpointWriter.Write(seedPath, QuantizedTestModels.Tiny(tiedHead: true), "W4A8-RTN");
        List<byte[]> seeds = [File.ReadAllBytes(seedPath)];
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 4_242, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run(seeds,
            [new MetadataValueMutator(), new MetadataValueMutator(), new SafeTensorsHeaderMutator(), new ByteMutator()],
            FuzzRunner.ThroughFile(path, p => QuantizedCheckpointReader.Load(p)),
            e => e is ModelFormatException m && m.FilePath == path, options,
            message => FuzzRunner.MaskMessage(message.Replace(path, "<file>")));
        FuzzCampaign.Check("quantized checkpoint", report, 40);
        Assert.That(report.InputsTried, Is.EqualTo(options.Iterations + seeds.Count));
        Assert.That(report.Rejected, Is.GreaterThan(options.Iterations / 2), "mutations should mostly break the file");
        Assert.That(report.MessageKinds, Has.Count.GreaterThanOrEqualTo(15), "mutations should reach many distinct checks");
    }

    /// <summary>Edits one value inside the agilequant.* JSON metadata: a number, a string, a removed or added member.</summary>
    private sealed class MetadataValueMutator : IFuzzMutator
    {
        private static readonly string[] JsonKeys = ["agilequant.transformer_config", "agilequant.linears"];
        private static readonly JsonNode[] Replacements = [0, -1, 1, 3, 4, 5, 7, 16, 31, 33, 64, 128, int.MaxValue, int.MinValue, 1e300, "", "int4_group", "f32", true, false];

        public string Name => "agilequant-metadata";

        // Edits the header JSON in memory: 8-byte length, header, then the data section unchanged (no files, so it is fast).
        public byte[] Mutate(byte[] input, Random random)
        {
            if (input.Length < 8) return input;
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(input);
            if (headerLength > (ulong)(input.Length - 8)) return input;
            try
            {
                if (JsonNode.Parse(input.AsSpan(8, (int)headerLength)) is not JsonObject header) return input;
                if (header["__metadata__"] is not JsonObject metadata) header["__metadata__"] = metadata = [];
                string key = JsonKeys[random.Next(JsonKeys.Length)];
                if (metadata[key] is JsonValue value && value.TryGetValue(out string? json) && JsonNode.Parse(json) is JsonObject root)
                {
                    JsonObject target = root;
                    if (key == "agilequant.linears" && root.Count > 0 && root[random.Next(root.Count)] is JsonObject linear) target = linear;
                    string[] names = target.Select(p => p.Key).ToArray();
                    string name = names.Length > 0 && random.Next(4) > 0 ? names[random.Next(names.Length)] : "extra";
                    if (random.Next(5) == 0) target.Remove(name);
                    else target[name] = Replacements[random.Next(Replacements.Length)].DeepClone();
                    metadata[key] = root.ToJsonString();
                }
                else if (random.Next(2) == 0) metadata["agilequant.quantization_config"] = "W" + random.Next(10) + "A" + random.Next(10);
                byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
                var output = new byte[8 + headerBytes.Length + input.Length - 8 - (int)headerLength];
                BinaryPrimitives.WriteUInt64LittleEndian(output, (ulong)headerBytes.Length);
                headerBytes.CopyTo(output, 8);
                input.AsSpan(8 + (int)headerLength).CopyTo(output.AsSpan(8 + headerBytes.Length));
                return output;
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException)
            {
                return input; // an already broken input stays as it is
            }
        }
    }
}
