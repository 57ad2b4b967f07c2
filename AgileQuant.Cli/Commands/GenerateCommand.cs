using System.CommandLine;
using AgileQuant.Core.Generation;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant generate</c>: streams generated text to stdout, then llama.cpp-style timings to stderr.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var prompt = new PromptOptions();
        var sampling = new SamplingCliOptions();
        var template = new ChatTemplateOption("Send the prompt as one user message in this chat format (model: the format of the model's own chat template) and generate the reply.");
        var json = new Option<bool>("--json")
        {
            Description = "Print one JSON object when done instead of streaming: text (the continuation), prompt_tokens, generated_tokens, finish (stop | length | context), "
                + "load_seconds, prompt_seconds, prompt_tokens_per_second, generation_seconds, generation_tokens_per_second, seconds, tokens_per_second.",
        };
        var command = new Command("generate",
            "Generate text from a prompt, streamed to stdout as it is produced (the prompt echoed first); timings on stderr. "
            + "Samples with llama.cpp's defaults unless --temperature 0 (greedy); stops at the model's end tokens, a --stop text, --max-tokens or a full context. "
            + "A prompt longer than the context keeps its last tokens (BOS kept), with a warning. "
            + "--chat-template sends the prompt as a user message in a chat format (model: the model's own template).");
        model.AddTo(command);
        prompt.AddTo(command);
        sampling.AddTo(command);
        template.AddTo(command);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            // Everything the command line says is checked before the model loads or anything is printed.
            GenerationOptions options = sampling.Read(parse);
            string text = prompt.Read(parse);
            bool modelTemplate = parse.GetValue(template.Option) == "model";
            ChatTemplate? chatTemplate = modelTemplate ? null : template.Read(parse);
            model.Validate(parse);
            bool asJson = parse.GetValue(json);

            var loadClock = System.Diagnostics.Stopwatch.StartNew();
            using LoadedModel loaded = model.Load(parse, cancel);
            double loadSeconds = loadClock.Elapsed.TotalSeconds;
            Tokenizer tokenizer = ModelOptions.RequireTokenizer(loaded);
            options = options with { EndTokenIds = loaded.EndTokenIds };
            var generator = new TextGenerator(loaded.Model, tokenizer);
            IReadOnlyList<int> encoded;
            if (modelTemplate || chatTemplate is not null)
            {
                // The prompt as the user's turn of a conversation, in the model's chat format; the reply ends at its end tokens.
                using AgileQuantChatClient chat = loaded.AsChatClient(new AgileQuantChatClientOptions { Template = chatTemplate });
                ChatMessage[] conversation = [new ChatMessage(ChatRole.User, text)];
                encoded = chat.EncodePrompt(conversation);
                text = string.Concat(chat.Template.FormatSegments(conversation));
                options = options with { StopSequences = [.. chat.Template.StopSequences, .. options.StopSequences] };
            }
            else encoded = generator.EncodePrompt(text);
            IReadOnlyList<int> promptIds = FitToContext(encoded, loaded.Model.Config, options.MaxTokens, out bool truncated);

            var clock = System.Diagnostics.Stopwatch.StartNew();
            GenerationResult result;
            if (asJson) result = generator.GenerateAsync(promptIds, options, null, cancel).GetAwaiter().GetResult();
            else
            {
                Console.Out.Write(truncated ? tokenizer.Decode(promptIds) : text);
                result = Stream(generator, promptIds, options, cancel);
                Console.Out.WriteLine();
            }
            double seconds = clock.Elapsed.TotalSeconds;
            GenerationTimings t = result.Timings;
            if (asJson)
            {
                var fields = new Dictionary<string, object?>
                {
                    ["text"] = result.Text, ["prompt_tokens"] = result.PromptTokens, ["generated_tokens"] = result.Tokens.Count,
                    ["finish"] = FinishName(result.Finish), ["load_seconds"] = Math.Round(loadSeconds, 3),
                    ["prompt_seconds"] = Math.Round(t.PromptSeconds, 4), ["prompt_tokens_per_second"] = Math.Round(t.PromptTokensPerSecond(result.PromptTokens), 2),
                    ["generation_seconds"] = Math.Round(t.DecodeSeconds, 4), ["generation_tokens_per_second"] = Math.Round(t.DecodeTokensPerSecond, 2),
                    ["seconds"] = Math.Round(seconds, 3), ["tokens_per_second"] = Math.Round(result.Tokens.Count / Math.Max(1e-9, seconds), 2),
                };
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(fields));
            }
            else PrintTimings(loadSeconds, result);
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>The contract names of <c>finish</c>: <c>stop</c> (an end token or a stop text), <c>length</c> (--max-tokens), <c>context</c> (the context is full).</summary>
    internal static string FinishName(FinishReason finish) => finish switch
    {
        FinishReason.EndOfSequence or FinishReason.StopSequence => "stop",
        FinishReason.MaxTokens => "length",
        _ => "context",
    };

    /// <summary>
    /// The prompt unchanged when it fits the context; otherwise its last tokens (BOS kept in front), leaving room for
    /// min(max tokens, a quarter of the context) generated tokens, with a warning on stderr.
    /// </summary>
    internal static IReadOnlyList<int> FitToContext(IReadOnlyList<int> ids, TransformerConfig config, int maxTokens, out bool truncated)
    {
        int context = config.MaxSequenceLength;
        truncated = ids.Count >= context;
        if (!truncated) return ids;
        int room = Math.Clamp(maxTokens, 1, Math.Max(1, context / 4));
        int keep = context - room;
        bool bos = ids.Count > 0 && ids[0] == config.BosTokenId;
        int tail = bos ? keep - 1 : keep;
        int[] kept = [.. bos ? [ids[0]] : Array.Empty<int>(), .. ids.Skip(ids.Count - tail)];
        Console.Error.WriteLine($"agilequant: warning: the prompt has {ids.Count} tokens but the model's context holds {context}: "
            + $"keeping its last {tail} tokens{(bos ? " after BOS" : "")}, which leaves room for {room} generated tokens.");
        return kept;
    }

    /// <summary>Runs generation, writing each piece to stdout as soon as it is complete.</summary>
    internal static GenerationResult Stream(TextGenerator generator, IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancel)
    {
        var progress = new SynchronousProgress<GenerationUpdate>(update => { Console.Out.Write(update.Text); Console.Out.Flush(); });
        return generator.GenerateAsync(promptIds, options, progress, cancel).GetAwaiter().GetResult();
    }

    /// <summary>llama.cpp's performance summary (<c>llama_perf_context_print</c>), on stderr.</summary>
    internal static void PrintTimings(double loadSeconds, GenerationResult result)
    {
        GenerationTimings t = result.Timings;
        double promptMs = t.PromptSeconds * 1000, evalMs = t.DecodeSeconds * 1000;
        Console.Error.WriteLine($"load time        = {loadSeconds * 1000,10:F2} ms");
        Console.Error.WriteLine($"prompt eval time = {promptMs,10:F2} ms / {result.PromptTokens,5} tokens ({promptMs / Math.Max(1, result.PromptTokens),8:F2} ms per token, {t.PromptTokensPerSecond(result.PromptTokens),9:F2} tokens per second)");
        Console.Error.WriteLine($"eval time        = {evalMs,10:F2} ms / {t.DecodeSteps,5} runs   ({(t.DecodeSteps > 0 ? evalMs / t.DecodeSteps : 0),8:F2} ms per token, {t.DecodeTokensPerSecond,9:F2} tokens per second)");
        Console.Error.WriteLine($"generated {result.Tokens.Count} tokens, finish: {FinishName(result.Finish)}");
    }
}
