using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.QuantizedCheckpoints;
using AgileQuant.Models.SafeTensors;
using AgileQuant.Tests.Models.SafeTensors;
using Microsoft.Extensions.AI;

namespace AgileQuant.Tests.Models;

/// <summary>
/// The public load API on the bundled stories260K model: <see cref="LoadedModel"/> disposal, <see cref="ModelLoadOptions"/>
/// (threads, kernel override, memory map on/off, quantization), load progress and cancellation.
/// </summary>
[TestFixture]
public class LoadedModelTests
{
    private static readonly int[] Prompt = [1, 403, 407, 261, 378, 259, 280];
    private static string Stories260K => SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");

    [Test]
    public void DisposeIsIdempotentAndThreadSafeAndLaterUseThrowsObjectDisposed()
    {
        LoadedModel loaded = ModelLoader.Load(Stories260K);
        AgileQuantChatClient client = loaded.AsChatClient();
        Assert.That(loaded.IsDisposed, Is.False);

        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ => loaded.Dispose());
        loaded.Dispose();

        Assert.That(loaded.IsDisposed, Is.True);
        Assert.That(() => loaded.Model, Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => loaded.Tokenizer, Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => loaded.CreateContext(), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => loaded.AsChatClient(), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")]), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(loaded.SourcePath, Is.EqualTo(Stories260K), "the source path stays readable for error messages");
    }

    [Test]
    public void ProgressReportsEveryTensorThenTheCheckThenTheTokenizer()
    {
        var reports = new List<ModelLoadProgress>();
        using LoadedModel loaded = ModelLoader.Load(Stories260K, progress: new Recorder<ModelLoadProgress>(reports.Add));

        // llama2.c stores the embedding table, 9 tensors per layer (5 layers) and the final norm; the classifier is shared.
        const int tensors = 1 + 9 * 5 + 1;
        List<ModelLoadProgress> reading = reports.Where(r => r.Stage == ModelLoadStage.ReadingWeights).ToList();
        Assert.That(reading.Select(r => r.Done), Is.EqualTo(Enumerable.Range(1, tensors)));
        Assert.That(reading.All(r => r.Total == tensors), Is.True);
        Assert.That(reports.Select(r => r.Stage).Distinct(),
            Is.EqualTo(new[] { ModelLoadStage.ReadingWeights, ModelLoadStage.CheckingWeights, ModelLoadStage.LoadingTokenizer }));
        Assert.That(reports[^1], Is.EqualTo(new ModelLoadProgress(ModelLoadStage.LoadingTokenizer, 1, 1)));
    }

    [Test]
    public void CancellationStopsTheLoadBetweenTensors()
    {
        using var before = new CancellationTokenSource();
        before.Cancel();
        Assert.That(() => ModelLoader.Load(Stories260K, cancellationToken: before.Token), Throws.InstanceOf<OperationCanceledException>());

        using var during = new CancellationTokenSource();
        int tensorsRead = 0;
        var progress = new Recorder<ModelLoadProgress>(p =>
        {
            if (p.Stage == ModelLoadStage.ReadingWeights && ++tensorsRead == 3) during.Cancel();
        });
        Assert.That(() => ModelLoader.Load(Stories260K, progress: progress, cancellationToken: during.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(tensorsRead, Is.EqualTo(3), "no tensor is read after the cancellation");
    }

    [Test]
    public void KernelOptionsChooseTheKernelAndItsThreads()
    {
        using LoadedModel oneThread = ModelLoader.Load(new ModelLoadOptions { Path = Stories260K, KernelOptions = new KernelOptions { Threads = 1 } });
        Assert.That(((KernelSet)oneThread.Model.Kernel).Threads, Is.EqualTo(1));
        Assert.That(((KernelSet)oneThread.Model.Kernel).Isa, Is.EqualTo(KernelSelector.BestSupported));

        using LoadedModel scalar = ModelLoader.Load(Stories260K, new ModelLoadOptions { KernelOptions = new KernelOptions { Preference = KernelPreference.Scalar, Threads = 2 } });
        Assert.That(((KernelSet)scalar.Model.Kernel).Isa, Is.EqualTo(KernelPreference.Scalar));
        Assert.That(((KernelSet)scalar.Model.Kernel).Threads, Is.EqualTo(2));
        Assert.That(() => ModelLoader.Load(Stories260K, new ModelLoadOptions { KernelOptions = new KernelOptions { Threads = -1 } }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("KernelOptions.Threads"));
        Assert.That(() => ModelLoader.Load(new ModelLoadOptions()), Throws.ArgumentException, "the options overload needs a path");
    }

    [Test]
    public void QuantizationOptionQuantizesAfterLoadingWithLayerProgress()
    {
        var reports = new List<ModelLoadProgress>();
        QuantizationConfig w8a8 = QuantizationConfig.Parse("W8A8");
        using LoadedModel quantized = ModelLoader.Load(Stories260K, new ModelLoadOptions { Quantization = w8a8 }, new Recorder<ModelLoadProgress>(reports.Add));
        using LoadedModel fp32 = ModelLoader.Load(Stories260K);

        Assert.That(quantized.Model.Weights.Layers.All(l => l.Query.Weight is Int8RowMatrix && l.Down.Weight is Int8RowMatrix), Is.True);
        Assert.That(reports.Where(r => r.Stage == ModelLoadStage.Quantizing).Select(r => r.Done), Is.EqualTo(Enumerable.Range(0, 6)));
        float[] expected = ModelQuantizer.Quantize(fp32.Model, w8a8).CreateContext().Forward(Prompt, allLogits: true);
        Assert.That(quantized.CreateContext().Forward(Prompt, allLogits: true), Is.EqualTo(expected));
    }

    [Test]
    public void MemoryMapOffReadsTheSameWeights()
    {
        using var dir = new TemporaryDirectory("aq-loaded-");
        string path = WriteQuantizedCheckpoint(dir, "W4A8-RTN");

        using (SafeTensorsFile mapped = SafeTensorsFile.Open(path))
        using (SafeTensorsFile copied = SafeTensorsFile.Open(path, memoryMap: false))
        {
            Assert.That(mapped.IsMemoryMapped, Is.True);
            Assert.That(copied.IsMemoryMapped, Is.False);
            foreach (SafeTensorInfo info in mapped.Tensors)
                Assert.That(copied.GetBytes(info.Name).SequenceEqual(mapped.GetBytes(info.Name)), Is.True, info.Name);
            copied.Dispose();
            Assert.That(() => copied.GetBytes(mapped.Tensors[0].Name).Length, Throws.InstanceOf<ObjectDisposedException>());
        }

        using LoadedModel viaMap = ModelLoader.Load(path);
        using LoadedModel viaReads = ModelLoader.Load(path, new ModelLoadOptions { UseMemoryMap = false });
        Assert.That(viaReads.CreateContext().Forward(Prompt, allLogits: true), Is.EqualTo(viaMap.CreateContext().Forward(Prompt, allLogits: true)));
    }

    [Test]
    public void QuantizingAQuantizedCheckpointIsRefused()
    {
        using var dir = new TemporaryDirectory("aq-loaded-");
        string path = WriteQuantizedCheckpoint(dir, "W8A8");
        Assert.That(() => ModelLoader.Load(path, new ModelLoadOptions { Quantization = QuantizationConfig.Parse("W4A8-RTN") }),
            Throws.InstanceOf<AgileQuant.Core.AgileQuantException>().With.Message.Contains("already a quantized checkpoint"));
    }

    [Test]
    public async Task LoadAsyncReturnsAWorkingModel()
    {
        using LoadedModel loaded = await ModelLoader.LoadAsync(new ModelLoadOptions { Path = Stories260K });
        using LoadedModel sync = ModelLoader.Load(Stories260K);
        Assert.That(loaded.CreateContext().Forward(Prompt), Is.EqualTo(sync.CreateContext().Forward(Prompt)));
    }

    /// <summary>stories260K quantized to <paramref name="config"/>, saved as a checkpoint in <paramref name="dir"/>.</summary>
    private static string WriteQuantizedCheckpoint(TemporaryDirectory dir, string config)
    {
        string path = Path.Combine(dir.FullPath, $"stories260K-{config}.safetensors");
        using LoadedModel fp32 = ModelLoader.Load(Stories260K);
        QuantizedCheckpointWriter.Write(path, ModelQuantizer.Quantize(fp32.Model, QuantizationConfig.Parse(config)), config);
        return path;
    }

    /// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread, in order.</summary>
    private sealed class Recorder<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
