using System.CommandLine;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant perplexity</c>: perplexity of a model (optionally quantized) on a text file.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var text = new Option<string>("--text") { Description = "UTF-8 text file to score.", Required = true };
        var protocol = new Option<string>("--protocol")
        {
            Description = "document: each document = BOS + text, cut at the context length; stream: all documents' tokens concatenated and cut into non-overlapping windows.",
            DefaultValueFactory = _ => "document",
        };
        protocol.AcceptOnlyFromAmong("document", "stream");
        var separator = new Option<string>("--separator") { Description = "Document separator in the text file (an empty string: the whole file is one document).", DefaultValueFactory = _ => "<|endoftext|>" };
        var skip = new Option<int>("--eval-skip-docs") { Description = "Skip the first N documents of --text (e.g. those used for calibration).", DefaultValueFactory = _ => 0 };
        var evalDocs = new Option<int?>("--eval-docs") { Description = "Score at most N documents (after --eval-skip-docs); default: all." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout: ppl, mean_nll, scored_tokens (surviving positions only when pruning), pruning, protocol, config, kl_vs_fp32, top1_vs_fp32, weight_bytes, fp32_ppl, sequences, context, seconds." };
        var quant = new QuantizationCliOptions();
        var command = new Command("perplexity", "Measure perplexity on a text file (per-document or stream protocol), in FP32 or a quantized configuration, with KL divergence and top-1 agreement versus FP32.");
        model.AddTo(command);
        command.Options.Add(text);
        command.Options.Add(protocol);
        command.Options.Add(separator);
        command.Options.Add(skip);
        command.Options.Add(evalDocs);
        quant.AddTo(command);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            using LoadedModel loaded = model.Load(parse, cancel);
            Tokenizer tokenizer = ModelOptions.RequireTokenizer(loaded);
            string path = parse.GetValue(text)!;
            var chosen = parse.GetValue(protocol) == "stream" ? PerplexityProtocol.Stream : PerplexityProtocol.Document;
            int ctx = loaded.Model.ContextLength; // --context: the sequence length scored, and the contexts' length
            int skipDocs = parse.GetValue(skip);
            if (skipDocs < 0) throw new AgileQuantException("--eval-skip-docs must be ≥ 0.");
            IReadOnlyList<IReadOnlyList<int>> documents = Tokenize(tokenizer, ReadText(path, "--text"), parse.GetValue(separator), skipDocs, parse.GetValue(evalDocs) ?? int.MaxValue, "evaluation");
            QuantizationRun run = quant.Read(parse, loaded, tokenizer, path, parse.GetValue(separator), skipDocs);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            TransformerModel candidate = run.Build(loaded.Model, cancel);
            EvaluationReport report = Evaluate(ExactKvCache(loaded.Model), candidate, run.Config, documents, chosen, ctx, cancel);
            double seconds = clock.Elapsed.TotalSeconds;
            long weightBytes = ModelQuantizer.QuantizedWeightBytes(loaded.Model, run.Config, run.GroupSize);
            if (parse.GetValue(json))
            {
                var fields = new Dictionary<string, object?>
                {
                    ["ppl"] = report.Result.Perplexity,
                    ["mean_nll"] = report.Result.MeanNll,
                    ["scored_tokens"] = report.Result.ScoredTokens,
                    ["pruning"] = run.PruningDescription,
                    ["protocol"] = chosen == PerplexityProtocol.Stream ? "stream" : "document",
                    ["config"] = run.Config.Name,
                    ["kl_vs_fp32"] = report.Kl,
                    ["top1_vs_fp32"] = report.Top1,
                    ["weight_bytes"] = weightBytes,
                    ["fp32_ppl"] = report.Fp32Perplexity,
                    ["sequences"] = report.Result.Sequences,
                    ["context"] = report.Result.ContextLength,
                    ["eval_skip_docs"] = skipDocs,
                    ["calib_docs"] = run.CalibrationDocuments,
                    ["seconds"] = Math.Round(seconds, 3),
                };
                Console.Out.WriteLine(JsonSerializer.Serialize(fields));
            }
            else
            {
                var inv = System.Globalization.CultureInfo.InvariantCulture;
                var table = new TextTable("metric", run.Config.Name)
                    .Add("perplexity", report.Result.Perplexity.ToString("F6", inv))
                    .Add("FP32 perplexity", report.Fp32Perplexity.ToString("F6", inv))
                    .Add("KL vs FP32 (nats)", report.Kl.ToString("G4", inv))
                    .Add("top-1 agreement", report.Top1.ToString("P2", inv))
                    .Add("mean NLL (nats)", report.Result.MeanNll.ToString("F6", inv))
                    .Add("scored tokens", report.Result.ScoredTokens.ToString("N0", inv))
                    .Add("sequences", report.Result.Sequences.ToString(inv))
                    .Add("protocol", report.Result.Protocol.ToString().ToLowerInvariant())
                    .Add("context", report.Result.ContextLength.ToString(inv))
                    .Add("weight bytes", weightBytes.ToString("N0", inv))
                    .Add("seconds", seconds.ToString("F1", inv));
                if (run.PruningDescription is string pruning) table.Add("token pruning", pruning);
                table.WriteTo(Console.Out);
                if (run.PruningDescription is not null)
                    Console.Out.WriteLine("Token pruning: only surviving positions are scored (not comparable with a dense perplexity).");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>
    /// <paramref name="model"/> with the default, exact KV cache: the FP32 reference that KL and top-1 compare against when
    /// --kv-type stores the candidate's keys and values in another type.
    /// </summary>
    internal static TransformerModel ExactKvCache(TransformerModel model) =>
        model.Options.KvCache is null ? model : new TransformerModel(model.Weights, model.Kernel, model.Options with { KvCache = null });

    /// <summary>Perplexity of <paramref name="candidate"/> and, when it is not the FP32 model itself, KL and top-1 versus FP32.</summary>
    internal static EvaluationReport Evaluate(TransformerModel fp32, TransformerModel candidate, QuantizationConfig config, IReadOnlyList<IReadOnlyList<int>> documents,
        PerplexityProtocol protocol, int context, CancellationToken cancel)
    {
        using var scoring = new ProgressLine($"scoring {config.Name}");
        var progress = new Progress<EvaluationProgress>(p => scoring.Report(p.SequencesDone, p.SequencesTotal, $"sequences, {p.ScoredTokens:N0} tokens"));
        if (ReferenceEquals(fp32, candidate))
        {
            PerplexityResult r = PerplexityEvaluator.Evaluate(fp32, documents, protocol, context, Environment.ProcessorCount, progress, cancel);
            return new EvaluationReport(r, r.Perplexity, 0, 1);
        }
        DistributionComparisonResult c = DistributionComparison.Compare(fp32, candidate, documents, protocol, context, Environment.ProcessorCount, progress, cancel);
        return new EvaluationReport(c.Candidate, c.Reference.Perplexity, c.MeanKlDivergence, c.Top1Agreement);
    }

    internal static string ReadText(string path, string option)
    {
        if (!File.Exists(path)) throw new AgileQuantException($"{option}: file not found: {path}");
        return GuardedFile.ReadAllText(path, GuardedFile.TextCorpusBytes);
    }

    /// <summary>Splits, skips, takes and tokenizes documents (BOS each), showing progress.</summary>
    internal static IReadOnlyList<IReadOnlyList<int>> Tokenize(Tokenizer tokenizer, string text, string? separator, int skip, int take, string what)
    {
        IReadOnlyList<string> all = TextCorpus.SplitDocuments(text, separator);
        string[] documents = all.Skip(skip).Take(take).ToArray();
        if (documents.Length == 0) throw new AgileQuantException($"The {what} text holds no documents after skipping {skip} (it has {all.Count}).");
        var tokenized = new IReadOnlyList<int>[documents.Length];
        using var progress = new ProgressLine($"tokenizing {what} text");
        for (int i = 0; i < documents.Length; i++)
        {
            tokenized[i] = tokenizer.EncodeToIds(documents[i]);
            progress.Report(i + 1, documents.Length, "documents");
        }
        return tokenized;
    }

    /// <summary>Tokenizes <paramref name="text"/> (BOS per document) and scores it in FP32 (the demo).</summary>
    internal static PerplexityResult Evaluate(TransformerModel model, Tokenizer tokenizer, string text, string? separator, PerplexityProtocol protocol, int context, CancellationToken cancel)
    {
        IReadOnlyList<IReadOnlyList<int>> documents = Tokenize(tokenizer, text, separator, 0, int.MaxValue, "evaluation");
        return Evaluate(model, model, QuantizationConfig.Parse("FP32"), documents, protocol, context, cancel).Result;
    }
}

/// <summary>What an evaluation measured.</summary>
internal sealed record EvaluationReport(PerplexityResult Result, double Fp32Perplexity, double Kl, double Top1);

/// <summary>A quantization configuration with its calibration data, ready to build.</summary>
internal sealed record QuantizationRun(QuantizationConfig Config, int GroupSize, IReadOnlyList<int[]> Calibration, int CalibrationDocuments,
    TokenPruningSchedule? Pruning = null, string? PruningDescription = null)
{
    public TransformerModel Build(TransformerModel fp32, CancellationToken cancel)
    {
        TransformerModel model = fp32;
        if (Config.QuantizesWeights || Config.QuantizesActivations)
        {
            using var progress = new ProgressLine($"quantizing to {Config.Name}");
            int layers = fp32.Config.NumLayers, done = 0;
            model = ModelQuantizer.Quantize(fp32, Config, new ModelQuantizationOptions
            {
                GroupSize = GroupSize,
                Calibration = Calibration,
                CancellationToken = cancel,
                Progress = new SynchronousProgress<string>(_ => progress.Report(++done, layers, "layers")),
            });
        }
        return Pruning is null ? model : WithPruning(model, Pruning);
    }

    /// <summary>
    /// <paramref name="model"/> with token pruning; a mixed scheme's lower-bit ratio becomes the schedule's per-layer
    /// lower-bit ratio (the set is then inherited across layers instead of re-selected in each).
    /// </summary>
    internal static TransformerModel WithPruning(TransformerModel model, TokenPruningSchedule pruning)
    {
        RuntimeOptions options = model.Options;
        TokenPruningSchedule schedule = options.LowBitTokenRatio > 0
            ? new TokenPruningSchedule(pruning.Ratios, Enumerable.Repeat(options.LowBitTokenRatio, model.Config.NumLayers).ToArray()) { Direction = pruning.Direction, Positions = pruning.Positions }
            : pruning;
        return new TransformerModel(model.Weights, model.Kernel, options with { LowBitTokenRatio = 0, Pruning = schedule });
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread.</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>--config, --group-size and the calibration options.</summary>
internal sealed class QuantizationCliOptions
{
    public Option<string> Config { get; } = new("--config")
    {
        Description = "Quantization configuration: " + string.Join(", ", QuantizationConfig.All.Select(c => c.Name)) + ".",
        DefaultValueFactory = _ => "FP32",
    };
    public Option<int> GroupSize { get; } = new("--group-size") { Description = "Group size of 4-bit weights (32, 64, 128; default 32).", DefaultValueFactory = _ => 0 };
    public Option<string?> CalibText { get; } = new("--calib-text") { Description = "Calibration text for GPTQ (default: --text, whose first --calib-docs documents should then be skipped with --eval-skip-docs)." };
    public Option<string> CalibSeparator { get; } = new("--calib-separator") { Description = "Document separator of the calibration text.", DefaultValueFactory = _ => "<|endoftext|>" };
    public Option<int> CalibDocs { get; } = new("--calib-docs") { Description = "Calibration documents (from the start of the calibration text).", DefaultValueFactory = _ => 100 };
    public Option<bool?> Log2Softmax { get; } = new("--log2-softmax") { Description = "Override the configuration: quantize softmax probabilities to 4-bit powers of two (true/false)." };
    public Option<bool?> Int8Qkv { get; } = new("--int8-qkv") { Description = "Override the configuration: round Q, K and V to 8 bits per token (true/false)." };
    public Option<bool?> Int8KvCache { get; } = new("--int8-kv-cache") { Description = "Override the configuration: store the KV cache as 8-bit codes per token and head (true/false)." };
    public Option<bool?> WeightClipSearch { get; } = new("--weight-clip-search") { Description = "Override the configuration: search each 4-bit weight group's clipping range for the least rounding error (true/false)." };
    public Option<double?> LowBitRatio { get; } = new("--low-bit-ratio") { Description = "Override the configuration: fraction of prefill tokens with 4-bit activations at o_proj/MLP (mixed scheme)." };
    public Option<double?> PruneRatio { get; } = new("--prune-ratio") { Description = "Token pruning during prefill: fraction β of the tokens pruned by the last layer, progressively from --prune-start-layer (per layer γ = 1 − (1−β)^(1/m)); only surviving positions are scored." };
    public Option<int?> PruneStartLayer { get; } = new("--prune-start-layer") { Description = "First pruning layer (default: the middle layer)." };
    public Option<string> PruneDirection { get; } = new("--prune-direction") { Description = "Prune the tokens with the lowest or the highest attention to the start token.", DefaultValueFactory = _ => "lowest" };
    public Option<string> PrunePositions { get; } = new("--prune-positions") { Description = "Positions after pruning: renumbered (contiguous, like the reference code) or original (RoPE and ALiBi only; OPT's learned positions are unaffected).", DefaultValueFactory = _ => "renumbered" };

    public QuantizationCliOptions()
    {
        PruneDirection.AcceptOnlyFromAmong("lowest", "highest");
        PrunePositions.AcceptOnlyFromAmong("renumbered", "original");
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Config);
        command.Options.Add(GroupSize);
        command.Options.Add(CalibText);
        command.Options.Add(CalibSeparator);
        command.Options.Add(CalibDocs);
        command.Options.Add(Log2Softmax);
        command.Options.Add(Int8Qkv);
        command.Options.Add(Int8KvCache);
        command.Options.Add(LowBitRatio);
        command.Options.Add(WeightClipSearch);
        command.Options.Add(PruneRatio);
        command.Options.Add(PruneStartLayer);
        command.Options.Add(PruneDirection);
        command.Options.Add(PrunePositions);
    }

    /// <summary>The progressive pruning schedule the command line asks for and its description, or nulls without --prune-ratio.</summary>
    public (TokenPruningSchedule? Schedule, string? Description) ReadPruning(ParseResult parse, int numLayers)
    {
        if (parse.GetValue(PruneRatio) is not double beta)
        {
            if (parse.GetValue(PruneStartLayer) is not null) throw new AgileQuantException("--prune-start-layer needs --prune-ratio.");
            return (null, null);
        }
        if (!(beta >= 0 && beta < 1)) throw new AgileQuantException($"--prune-ratio must be in [0, 1), found {beta}.");
        int start = parse.GetValue(PruneStartLayer) ?? numLayers / 2;
        if (start < 0 || start >= numLayers) throw new AgileQuantException($"--prune-start-layer must be in [0, {numLayers}), found {start}.");
        var direction = parse.GetValue(PruneDirection) == "highest" ? Core.Pruning.PruningDirection.Highest : Core.Pruning.PruningDirection.Lowest;
        var positions = parse.GetValue(PrunePositions) == "original" ? PrunedPositions.Original : PrunedPositions.Renumbered;
        var schedule = new TokenPruningSchedule(TokenPruningSchedule.Progressive(numLayers, start, beta).Ratios) { Direction = direction, Positions = positions };
        string description = $"β={beta} from layer {start} ({direction.ToString().ToLowerInvariant()}, {positions.ToString().ToLowerInvariant()} positions)";
        return (schedule, description);
    }

    /// <summary>The named configuration with the command line's overrides applied.</summary>
    public QuantizationConfig ReadConfig(ParseResult parse)
    {
        QuantizationConfig config = QuantizationConfig.Parse(parse.GetValue(Config)!);
        if (parse.GetValue(Log2Softmax) is bool log2) config = config with { Log2Softmax = log2 };
        if (parse.GetValue(Int8Qkv) is bool qkv) config = config with { EightBitQkv = qkv };
        if (parse.GetValue(Int8KvCache) is bool kv) config = config with { EightBitKvCache = kv };
        if (parse.GetValue(WeightClipSearch) is bool clip) config = config with { WeightClipSearch = clip };
        if (parse.GetValue(LowBitRatio) is double ratio)
        {
            if (!(ratio >= 0 && ratio < 1)) throw new AgileQuantException($"--low-bit-ratio must be in [0, 1), found {ratio}.");
            config = config with { LowBitTokenRatio = ratio };
        }
        return config;
    }

    /// <summary>
    /// Creates the options; <paramref name="calibTextDescription"/> replaces --calib-text's description for a command
    /// without an evaluation text (quantize), whose help must not mention --text or --eval-skip-docs.
    /// </summary>
    public QuantizationCliOptions(string calibTextDescription) : this() => CalibText.Description = calibTextDescription;

    /// <summary>
    /// The configuration and its calibration; <paramref name="evalText"/> is the evaluation text (the default calibration
    /// text, and checked for overlap with it), null for a command that evaluates nothing.
    /// </summary>
    public QuantizationRun Read(ParseResult parse, LoadedModel loaded, Tokenizer tokenizer, string? evalText, string? evalSeparator, int evalSkip)
    {
        QuantizationConfig config = ReadConfig(parse);
        int group = parse.GetValue(GroupSize);
        if (group is not (0 or 32 or 64 or 128)) throw new AgileQuantException($"--group-size must be 32, 64 or 128, found {group}.");
        (TokenPruningSchedule? pruning, string? pruningDescription) = ReadPruning(parse, loaded.Model.Config.NumLayers);
        if (config.Rounding != WeightRounding.Gptq && !config.StaticActivationScales) return new QuantizationRun(config, group, [], 0, pruning, pruningDescription);
        int docs = parse.GetValue(CalibDocs);
        if (docs <= 0) throw new AgileQuantException("--calib-docs must be positive.");
        string calibPath = parse.GetValue(CalibText) ?? evalText ?? throw new InvalidOptionException($"{config.Name} needs calibration text: pass --calib-text PATH.");
        string? separator = parse.GetValue(CalibText) is null ? evalSeparator : parse.GetValue(CalibSeparator);
        if (evalText is not null && Path.GetFullPath(calibPath) == Path.GetFullPath(evalText) && evalSkip < docs)
            Console.Error.WriteLine($"warning: calibration uses the first {docs} documents of the evaluation text but --eval-skip-docs is {evalSkip}: they overlap.");
        int context = loaded.Model.ContextLength;
        int[][] calibration = PerplexityCommand.Tokenize(tokenizer, PerplexityCommand.ReadText(calibPath, "--calib-text"), separator, 0, docs, "calibration")
            .SelectMany(d => Chunks(d, context)).ToArray();
        return new QuantizationRun(config, group, calibration, docs, pruning, pruningDescription);
    }

    private static IEnumerable<int[]> Chunks(IReadOnlyList<int> tokens, int context)
    {
        for (int start = 0; start < tokens.Count; start += context)
            yield return tokens.Skip(start).Take(context).ToArray();
    }
}
