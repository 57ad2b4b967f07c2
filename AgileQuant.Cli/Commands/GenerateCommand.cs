using System.CommandLine;
using AgileQuant.Core.Generation;
using AgileQuant.Models;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant generate</c>: streams generated text to stdout.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var prompt = new Option<string>("--prompt") { Description = "The text to continue.", Required = true };
        var sampling = new SamplingCliOptions();
        var json = new Option<bool>("--json") { Description = "Print one JSON object when done instead of streaming: text (the continuation), prompt_tokens, generated_tokens, finish, seconds, tokens_per_second." };
        var command = new Command("generate", "Generate text from a prompt, streamed to stdout as it is produced.");
        model.AddTo(command);
        command.Options.Add(prompt);
        sampling.AddTo(command);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            using LoadedModel loaded = model.Load(parse, cancel);
            var generator = new TextGenerator(loaded.Model, ModelOptions.RequireTokenizer(loaded));
            string text = parse.GetValue(prompt)!;
            if (parse.GetValue(json))
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                GenerationResult done = generator.GenerateAsync(text, sampling.Read(parse), null, cancel).GetAwaiter().GetResult();
                double seconds = clock.Elapsed.TotalSeconds;
                var fields = new Dictionary<string, object?>
                {
                    ["text"] = done.Text, ["prompt_tokens"] = done.PromptTokens, ["generated_tokens"] = done.Tokens.Count,
                    ["finish"] = done.Finish.ToString(), ["seconds"] = Math.Round(seconds, 3),
                    ["tokens_per_second"] = Math.Round(done.Tokens.Count / Math.Max(1e-9, seconds), 2),
                };
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(fields));
                return ExitCodes.Success;
            }
            Console.Out.Write(text);
            GenerationResult result = Stream(generator, text, sampling.Read(parse), cancel);
            Console.Out.WriteLine();
            Console.Error.WriteLine($"generated {result.Tokens.Count} tokens ({result.Finish})");
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>Runs generation, writing each piece to stdout as soon as it is complete.</summary>
    internal static GenerationResult Stream(TextGenerator generator, string prompt, GenerationOptions options, CancellationToken cancel)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var progress = new SynchronousProgress<GenerationUpdate>(update => { Console.Out.Write(update.Text); Console.Out.Flush(); });
        GenerationResult result = generator.GenerateAsync(prompt, options, progress, cancel).GetAwaiter().GetResult();
        Console.Error.WriteLine($"\n[{result.PromptTokens} prompt tokens, {result.Tokens.Count} generated in {clock.Elapsed.TotalSeconds:F2}s: {result.Tokens.Count / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F1} tokens/s]");
        return result;
    }
}

/// <summary>Sampling options shared by generate and demo.</summary>
internal sealed class SamplingCliOptions
{
    public Option<int> MaxTokens { get; } = new("--max-tokens") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 256 };
    public Option<float> Temperature { get; }
    public Option<int> TopK { get; } = new("--top-k") { Description = "Sample only from the K most likely tokens (0 = all).", DefaultValueFactory = _ => 0 };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Nucleus sampling: the smallest set of tokens with probability ≥ P (1 = all).", DefaultValueFactory = _ => 1f };
    public Option<int> Seed { get; } = new("--seed") { Description = "Random seed; the same seed gives the same text.", DefaultValueFactory = _ => 42 };

    public SamplingCliOptions(float defaultTemperature = 0f) =>
        Temperature = new("--temperature") { Description = "Sampling temperature; 0 = greedy.", DefaultValueFactory = _ => defaultTemperature };

    public void AddTo(Command command)
    {
        command.Options.Add(MaxTokens);
        command.Options.Add(Temperature);
        command.Options.Add(TopK);
        command.Options.Add(TopP);
        command.Options.Add(Seed);
    }

    public GenerationOptions Read(ParseResult parse)
    {
        var sampling = new SamplingOptions
        {
            Temperature = parse.GetValue(Temperature),
            TopK = parse.GetValue(TopK),
            TopP = parse.GetValue(TopP),
            Seed = parse.GetValue(Seed),
        };
        sampling.Validate();
        int max = parse.GetValue(MaxTokens);
        if (max < 0) throw new ArgumentOutOfRangeException("--max-tokens", max, "--max-tokens must be ≥ 0.");
        return new GenerationOptions { Sampling = sampling, MaxTokens = max };
    }
}
