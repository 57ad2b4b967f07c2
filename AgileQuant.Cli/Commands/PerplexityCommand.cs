using System.CommandLine;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant perplexity</c>: perplexity of a model on a text file.</summary>
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
        var context = new Option<int?>("--context") { Description = "Sequence length (default: the model's context length)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout: ppl, mean_nll, scored_tokens, protocol, sequences, context, seconds." };
        var command = new Command("perplexity", "Measure perplexity on a text file (per-document or stream protocol).");
        model.AddTo(command);
        command.Options.Add(text);
        command.Options.Add(protocol);
        command.Options.Add(separator);
        command.Options.Add(context);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            LoadedModel loaded = model.Load(parse);
            Tokenizer tokenizer = ModelOptions.RequireTokenizer(loaded);
            string path = parse.GetValue(text)!;
            if (!File.Exists(path)) throw new AgileQuantException($"--text: file not found: {path}");
            var chosen = parse.GetValue(protocol) == "stream" ? PerplexityProtocol.Stream : PerplexityProtocol.Document;
            int ctx = parse.GetValue(context) ?? loaded.Model.Config.MaxSequenceLength;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            PerplexityResult result = Evaluate(loaded.Model, tokenizer, File.ReadAllText(path), parse.GetValue(separator), chosen, ctx, cancel);
            double seconds = clock.Elapsed.TotalSeconds;
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["ppl"] = result.Perplexity,
                    ["mean_nll"] = result.MeanNll,
                    ["scored_tokens"] = result.ScoredTokens,
                    ["protocol"] = chosen == PerplexityProtocol.Stream ? "stream" : "document",
                    ["sequences"] = result.Sequences,
                    ["context"] = result.ContextLength,
                    ["config"] = "FP32",
                    ["seconds"] = Math.Round(seconds, 3),
                }));
            }
            else
            {
                Console.Out.WriteLine($"perplexity {result.Perplexity:F6}  (mean NLL {result.MeanNll:F6} nats over {result.ScoredTokens:N0} scored tokens, {result.Sequences} sequences, {result.Protocol.ToString().ToLowerInvariant()} protocol, context {result.ContextLength}, {seconds:F1}s)");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>Tokenizes <paramref name="text"/> (BOS per document) and scores it, showing progress on stderr.</summary>
    internal static PerplexityResult Evaluate(TransformerModel model, Tokenizer tokenizer, string text, string? separator, PerplexityProtocol protocol, int context, CancellationToken cancel)
    {
        IReadOnlyList<string> documents = TextCorpus.SplitDocuments(text, separator);
        if (documents.Count == 0) throw new AgileQuantException("The text holds no documents (empty after splitting and trimming).");
        var tokenized = new IReadOnlyList<int>[documents.Count];
        using (var progress = new ProgressLine("tokenizing"))
            for (int i = 0; i < documents.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                tokenized[i] = tokenizer.EncodeToIds(documents[i]);
                progress.Report(i + 1, documents.Count, "documents");
            }
        using var scoring = new ProgressLine("scoring");
        return PerplexityEvaluator.Evaluate(model, tokenized, protocol, context, parallelism: Environment.ProcessorCount,
            new Progress<EvaluationProgress>(p => scoring.Report(p.SequencesDone, p.SequencesTotal, $"sequences, {p.ScoredTokens:N0} tokens")), cancel);
    }
}
