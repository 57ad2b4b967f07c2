using System.CommandLine;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary>The options every model-running command shares: which model, tokenizer, weights file.</summary>
internal sealed class ModelOptions
{
    public Option<string> Model { get; } = new("--model") { Description = "A llama2.c .bin checkpoint or a Hugging Face model directory (config.json + safetensors).", Required = true };
    public Option<string?> Tokenizer { get; } = new("--tokenizer") { Description = "Tokenizer file (llama2.c tokenizer.bin or SentencePiece tokenizer.model); default: the one beside the model." };
    public Option<string?> Weights { get; } = new("--weights") { Description = "For a Hugging Face directory: the weights file to use, e.g. model.f16.safetensors (default: model.safetensors or the sharded index)." };

    public Option<int> Threads { get; } = new("--threads") { Description = "Threads per matrix multiplication (0 = one per processor).", DefaultValueFactory = _ => 0 };
    public Option<string> Kernel { get; } = KernelOption();
    public Option<string> KvType { get; } = KvTypeOption();
    public Option<int?> Context { get; } = new("--context") { Description = "Context length: most tokens (prompt plus generated) one sequence may hold (default: the model's). The KV cache grows with the tokens held, not with this." };

    internal static Option<string> KvTypeOption()
    {
        var option = new Option<string>("--kv-type")
        {
            Description = "How the KV cache stores keys and values: auto (exact: f32, or a quantized scheme's own 8-bit codes), f32, f16, q8 (int8: values a scale per 32, keys a scale per channel and 32 tokens) or q4 (4-bit: values after a Hadamard rotation, keys per channel and 16 tokens).",
            DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong("auto", "f32", "f16", "q8", "q4");
        return option;
    }

    /// <summary>The KV cache type named by <paramref name="text"/> (f32, f16, q8, q4), or null for auto.</summary>
    internal static KvCacheType? ParseKvType(string text) => text.ToLowerInvariant() switch
    {
        "auto" => null,
        "f32" => KvCacheType.F32,
        "f16" => KvCacheType.F16,
        "q8" => KvCacheType.Q8,
        "q4" => KvCacheType.Q4,
        _ => throw new AgileQuantException($"--kv-type: expected auto, f32, f16, q8 or q4, found \"{text}\"."),
    };

    /// <summary>The --kv-type given, or null for auto.</summary>
    public KvCacheType? ReadKvType(ParseResult parse) => ParseKvType(parse.GetValue(KvType)!);

    /// <summary>The <c>--kernel</c> option: <c>auto</c> or a name from the kernel catalog.</summary>
    internal static Option<string> KernelOption()
    {
        string entries = string.Join(", ", KernelCatalog.Entries.Select(e => $"{e.Name} ({e.Description})"));
        var option = new Option<string>("--kernel") { Description = $"Instruction set of the kernels: auto (widest supported), {entries}.", DefaultValueFactory = _ => "auto" };
        option.AcceptOnlyFromAmong(["auto", .. KernelCatalog.Entries.Select(e => e.Name)]);
        return option;
    }

    internal static KernelOptions ReadKernelOptions(ParseResult parse, Option<string> kernel, Option<int> threads)
    {
        int t = ReadThreads(parse, threads);
        string name = parse.GetValue(kernel)!;
        if (!KernelCatalog.TryParse(name, out KernelPreference preference))
            throw new InvalidOptionException($"--kernel expected auto or one of {string.Join(", ", KernelCatalog.Entries.Select(e => e.Name))}, found '{name}'.");
        return new KernelOptions { Preference = preference, Threads = t };
    }

    private static int _threadsCapWarned;

    /// <summary>Checks the kernel and thread options before anything is loaded.</summary>
    public void Validate(ParseResult parse) => ReadKernelOptions(parse, Kernel, Threads);

    /// <summary>
    /// The thread count of <paramref name="threads"/> (0: one per processor), refused when negative and capped at the
    /// processor count with a warning on stderr, said once per process: more threads than processors only adds switching,
    /// and each thread is created, so a huge count would otherwise exhaust memory before any work.
    /// </summary>
    internal static int ReadThreads(ParseResult parse, Option<int> threads)
    {
        int t = parse.GetValue(threads);
        if (t < 0) throw new InvalidOptionException($"{threads.Name} must be ≥ 0 (0 = one per processor), found {t}.");
        if (t <= Environment.ProcessorCount) return t;
        if (Interlocked.Exchange(ref _threadsCapWarned, 1) == 0)
            Console.Error.WriteLine($"agilequant: warning: {threads.Name} {t} is more than the {Environment.ProcessorCount} processors here; using {Environment.ProcessorCount}.");
        return Environment.ProcessorCount;
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Threads);
        command.Options.Add(Kernel);
        command.Options.Add(KvType);
        command.Options.Add(Context);
        command.Options.Add(Model);
        command.Options.Add(Tokenizer);
        command.Options.Add(Weights);
    }

    public LoadedModel Load(ParseResult parse, CancellationToken cancel = default)
    {
        string path = parse.GetValue(Model)!;
        if (parse.GetValue(Weights) is not null && File.Exists(path)) // the library names ModelLoadOptions.WeightsFile; say it in flags
            throw new AgileQuantException("--weights applies to a Hugging Face model directory, not to a single file.");
        var started = System.Diagnostics.Stopwatch.StartNew();
        LoadedModel loaded;
        using (var bar = new ProgressLine("loading"))
        {
            var progress = new SynchronousProgress<ModelLoadProgress>(p => bar.Report(p.Done, p.Total, StageName(p.Stage)));
            loaded = ModelLoader.Load(path, new ModelLoadOptions
            {
                TokenizerPath = parse.GetValue(Tokenizer),
                WeightsFile = parse.GetValue(Weights),
                KernelOptions = ReadKernelOptions(parse, Kernel, Threads),
                KvCache = ReadKvType(parse),
                ContextLength = parse.GetValue(Context) is int context && context <= 0
                    ? throw new AgileQuantException($"--context must be positive, found {context}.")
                    : parse.GetValue(Context),
            }, progress, cancel);
        }
        var c = loaded.Model.Config;
        Console.Error.WriteLine($"loaded {c.Family} model from {loaded.SourcePath}: {c.NumLayers} layers, dim {c.HiddenSize}, vocab {c.VocabSize}, context {loaded.Model.ContextLength}, kernel {loaded.Model.Kernel.Name} ({started.Elapsed.TotalSeconds:F2}s)");
        if (parse.GetValue(CliErrors.VerboseOption)) Console.Error.WriteLine(KvCacheLine(loaded.Model));
        return loaded;
    }

    /// <summary>One line on the KV cache: its type, bytes per token, and what the full context would take (it grows as used).</summary>
    internal static string KvCacheLine(Core.Runtime.TransformerModel model)
    {
        double perToken = model.KvCacheBytesPerToken;
        return $"KV cache: {model.KvCacheDescription}, {perToken:N0} bytes per token ({model.Config.NumLayers} layers, keys and values); " +
            $"{perToken * (double)model.ContextLength / 1048576:F1} MiB at the full context of {model.ContextLength:N0} tokens, allocated as the context grows";
    }

    private static string StageName(ModelLoadStage stage) => stage switch
    {
        ModelLoadStage.ReadingWeights => "tensors",
        ModelLoadStage.CheckingWeights => "checking weights",
        ModelLoadStage.LoadingTokenizer => "tokenizer",
        _ => "layers quantized",
    };

    public static Tokenizer RequireTokenizer(LoadedModel loaded) =>
        loaded.Tokenizer ?? throw new AgileQuantException($"No tokenizer was found for {loaded.SourcePath}; pass --tokenizer PATH.");
}
