using AgileQuant.Models;
using AgileQuant.Models.SafeTensors;
using static AgileQuant.Tests.Models.SafeTensors.RawSafeTensorsBytes;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>Sharded checkpoints (model.safetensors.index.json) built in a temp directory.</summary>
public sealed class SafeTensorsCheckpointTests() : TemporaryDirectoryFixture("aq-checkpoint-")
{
    private const string ShardA = "model-00001-of-00002.safetensors";
    private const string ShardB = "model-00002-of-00002.safetensors";

    // Shard A holds "a" = [1, 2], shard B holds "b" = [3] and "c" = [4, 5, 6].
    private void WriteShards()
    {
        File.WriteAllBytes(Path.Combine(Temp.FullPath, ShardA), Build(Header(Entry("a", "F32", [2], 0, 8)), Float32Bytes(1, 2)));
        File.WriteAllBytes(Path.Combine(Temp.FullPath, ShardB),
            Build(Header(Entry("b", "F32", [1], 0, 4), Entry("c", "F32", [3], 4, 16)), Float32Bytes(3, 4, 5, 6)));
    }

    private string WriteIndex(string weightMapJson, string name = SafeTensorsCheckpoint.IndexFileName)
    {
        string path = Path.Combine(Temp.FullPath, name);
        File.WriteAllText(path, "{\"metadata\":{\"total_size\":24},\"weight_map\":{" + weightMapJson + "}}");
        return path;
    }

    private static string Map(params (string Tensor, string Shard)[] entries) =>
        string.Join(",", entries.Select(e => $"\"{e.Tensor}\":\"{e.Shard}\""));

    [Test]
    public void ShardedDirectoryResolvesEveryTensorToItsShard()
    {
        WriteShards();
        WriteIndex(Map(("c", ShardB), ("a", ShardA), ("b", ShardB)));
        using var checkpoint = SafeTensorsCheckpoint.Open(Temp.FullPath);

        Assert.That(checkpoint.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b", "c" }));
        Assert.That(checkpoint.Files, Has.Count.EqualTo(2));
        Assert.That(Path.GetFileName(checkpoint.FilePathOf("a")), Is.EqualTo(ShardA));
        Assert.That(Path.GetFileName(checkpoint.FilePathOf("c")), Is.EqualTo(ShardB));
        Assert.That(checkpoint.ReadFloat32("c"), Is.EqualTo(new[] { 4f, 5f, 6f }));
        Assert.That(checkpoint.ReadFloat32("a"), Is.EqualTo(new[] { 1f, 2f }));
        Assert.That(checkpoint.TryGet("zz", out _), Is.False);
        var missing = Assert.Throws<ModelFormatException>(() => checkpoint.Get("zz"))!;
        Assert.That(missing.Message, Does.Contain(SafeTensorsCheckpoint.IndexFileName).And.Contain("'zz'"));
        checkpoint.Dispose();
        checkpoint.Dispose();
    }

    [Test]
    public void IndexPointingToMissingShardIsRefused()
    {
        WriteShards();
        string index = WriteIndex(Map(("a", ShardA), ("b", ShardB), ("c", "model-00003-of-00002.safetensors")));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Temp.FullPath))!;
        Assert.That(error.FilePath, Is.EqualTo(index));
        Assert.That(error.TensorName, Is.EqualTo("c"));
        Assert.That(error.Message, Does.Contain(index).And.Contain("'c'").And.Contain("model-00003-of-00002.safetensors"));
    }

    [Test]
    public void IndexedTensorAbsentFromItsShardIsRefused()
    {
        WriteShards();
        WriteIndex(Map(("a", ShardA), ("b", ShardB), ("c", ShardA)));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Temp.FullPath))!;
        Assert.That(error.FilePath, Does.EndWith(ShardA));
        Assert.That(error.Message, Does.Contain(ShardA).And.Contain("'c'").And.Contain("found it missing"));
    }

    [Test]
    public void TensorInTwoShardsIsRefused()
    {
        WriteShards();
        File.WriteAllBytes(Path.Combine(Temp.FullPath, ShardA),
            Build(Header(Entry("a", "F32", [1], 0, 4), Entry("b", "F32", [1], 4, 8)), Float32Bytes(1, 2)));
        WriteIndex(Map(("a", ShardA), ("b", ShardB), ("c", ShardB)));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Temp.FullPath))!;
        Assert.That(error.Message, Does.Contain(ShardA).And.Contain("'b'").And.Contain("also in"));
    }

    [Test]
    public void ShardTensorMissingFromWeightMapIsRefused()
    {
        WriteShards();
        WriteIndex(Map(("a", ShardA), ("b", ShardB)));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Temp.FullPath))!;
        Assert.That(error.Message, Does.Contain(ShardB).And.Contain("'c'").And.Contain("unlisted"));
    }

    [Test]
    public void DuplicateWeightMapEntryIsRefused()
    {
        WriteShards();
        string index = WriteIndex(Map(("a", ShardA), ("b", ShardB), ("c", ShardB), ("a", ShardA)));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(index))!;
        Assert.That(error.Message, Does.Contain(index).And.Contain("'a'").And.Contain("duplicate"));
    }

    [Test]
    public void ShardNameWithFolderIsRefused()
    {
        WriteShards();
        string index = WriteIndex(Map(("a", "../" + ShardA), ("b", ShardB), ("c", ShardB)));
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(index))!;
        Assert.That(error.Message, Does.Contain(index).And.Contain("'a'").And.Contain("without folders"));
    }

    [Test]
    public void IndexWithoutWeightMapOrWithBadJsonIsRefused()
    {
        string index = Path.Combine(Temp.FullPath, SafeTensorsCheckpoint.IndexFileName);
        File.WriteAllText(index, "{\"metadata\":{}}");
        Assert.That(Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(index))!.Message,
            Does.Contain(index).And.Contain("'weight_map'"));
        File.WriteAllText(index, "{\"weight_map\":{\"a\":");
        Assert.That(Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(index))!.Message,
            Does.Contain(index).And.Contain("valid JSON"));
    }

    [Test]
    public void DirectoryWithoutWeightsIsRefused()
    {
        var error = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(Temp.FullPath))!;
        Assert.That(error.Message, Does.Contain(Temp.FullPath).And.Contain("model.safetensors"));
    }

    [Test]
    public void VariantIndexIsFoundWhenNoVariantFileExists()
    {
        WriteShards();
        WriteIndex(Map(("a", ShardA), ("b", ShardB), ("c", ShardB)), "model.safetensors.index.q8.json");
        using var checkpoint = SafeTensorsCheckpoint.Open(Temp.FullPath, "q8");
        Assert.That(checkpoint.SourcePath, Does.EndWith("model.safetensors.index.q8.json"));
        Assert.That(checkpoint.Get("b").ElementCount, Is.EqualTo(1));
    }
}
