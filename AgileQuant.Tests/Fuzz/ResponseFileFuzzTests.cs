using System.Text;
using AgileQuant.Cli;
using AgileQuant.Core;
using AgileQuant.Tests.Models;
using AgileQuant.Tests.Models.SafeTensors;

namespace AgileQuant.Tests.Fuzz;

/// <summary>
/// Fuzzes the tool's response-file expansion (<see cref="ResponseFiles"/>): a mutated response file that names itself,
/// files that name each other in a cycle, a FIFO, a link to <c>/dev/zero</c>, a directory, quotes and comments must
/// expand or fail with an <see cref="AgileQuantException"/> (one line), never overflow the stack or hang.
/// </summary>
[Category("Fuzz")]
[Platform(Exclude = "Win", Reason = "FIFOs and /dev/zero are Unix features")]
public sealed class ResponseFileFuzzTests() : TemporaryDirectoryFixture("aq-fuzz-rsp-", inMemory: true)
{
    [Test]
    public void ResponseFileExpansionOnlyExpandsOrRaisesAgileQuantException()
    {
        string dir = Temp.FullPath, top = Path.Combine(dir, "top.rsp");
        string F(string name) => Path.Combine(dir, name);
        // The fixed files around the fuzzed one: a cycle back to it, a chain, and special files.
        File.WriteAllText(F("a.rsp"), $"--prompt \"a b\"\n@{F("b.rsp")}\n");
        File.WriteAllText(F("b.rsp"), $"@{F("a.rsp")} @{top}\n");
        File.WriteAllText(F("c.rsp"), "# only a comment\n\n--threads 4\n");
        SpecialFileTests.MakeFifo(F("fifo.rsp"));
        File.CreateSymbolicLink(F("zero.rsp"), "/dev/zero");
        Directory.CreateDirectory(F("dir.rsp"));
        List<byte[]> seeds =
        [
            Encoding.UTF8.GetBytes($"generate --model m.bin --prompt \"Once upon a time\"\n@{F("c.rsp")}\n"),
            Encoding.UTF8.GetBytes($"@{top}\n"),
            Encoding.UTF8.GetBytes($"info\n@{F("a.rsp")}\n"),
            Encoding.UTF8.GetBytes($"@{F("c.rsp")} @{F("c.rsp")} -- @{F("a.rsp")}\n# @{F("fifo.rsp")}\n"),
            Encoding.UTF8.GetBytes($"@{F("fifo.rsp")}\n@{F("zero.rsp")}\n@{F("dir.rsp")}\n"),
        ];
        var options = new FuzzOptions(FuzzCampaign.Iterations(), BaseSeed: 8_300, FuzzCampaign.PerInputLimit);
        FuzzReport report = FuzzRunner.Run(seeds, [new ByteMutator(), new ByteMutator(input => Math.Min(input.Length, 64))],
            FuzzRunner.ThroughFile(top, path => ResponseFiles.Expand(["@" + path])),
            e => e is AgileQuantException && !e.Message.Contains('\n'), options,
            message => FuzzRunner.MaskMessage(message.Replace(dir, "<dir>")));
        FuzzCampaign.Check("response files", report);
        Assert.That(report.Accepted, Is.GreaterThan(0));
        Assert.That(report.MessageKinds.Keys, Has.Some.Contains("includes itself"));
        Assert.That(report.MessageKinds.Keys, Has.Some.Contains("FIFO"));
    }
}
