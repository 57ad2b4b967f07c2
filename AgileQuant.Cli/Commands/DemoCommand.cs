using System.CommandLine;
using AgileQuant.Core.Evaluation;
using AgileQuant.Core.Generation;
using AgileQuant.Models;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant demo</c>: a story and a perplexity from the bundled stories260K model.</summary>
internal static class DemoCommand
{
    internal static string AssetsDirectory => Path.Combine(AppContext.BaseDirectory, "assets");

    public static Command Create()
    {
        var prompt = new Option<string>("--prompt") { Description = "Story opening.", DefaultValueFactory = _ => "Once upon a time" };
        var sampling = new SamplingCliOptions();
        var command = new Command("demo", "Tell a story with the bundled stories260K model (LLaMA architecture, 260K parameters) and measure its perplexity on the bundled TinyStories slice.");
        command.Options.Add(prompt);
        sampling.AddTo(command);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            GenerationOptions options = sampling.Read(parse);
            string modelPath = Path.Combine(AssetsDirectory, "models", "stories260K", "stories260K.bin");
            string textPath = Path.Combine(AssetsDirectory, "text", "tinystories_valid_first100.txt");
            var loadClock = System.Diagnostics.Stopwatch.StartNew();
            using LoadedModel loaded = ModelLoader.Load(modelPath);
            double loadSeconds = loadClock.Elapsed.TotalSeconds;
            var c = loaded.Model.Config;
            Console.WriteLine($"AgileQuant demo: stories260K ({c.NumLayers} layers, dim {c.HiddenSize}, {c.NumHeads} heads / {c.NumKvHeads} kv heads, vocab {c.VocabSize}), kernel {loaded.Model.Kernel.Name}");
            Console.WriteLine();
            options = options with { EndTokenIds = loaded.EndTokenIds };
            var generator = new TextGenerator(loaded.Model, ModelOptions.RequireTokenizer(loaded));
            string opening = parse.GetValue(prompt)!;
            Console.Write(opening);
            GenerationResult story = GenerateCommand.Stream(generator, generator.EncodePrompt(opening), options, cancel);
            Console.WriteLine();
            GenerateCommand.PrintTimings(loadSeconds, story);
            Console.WriteLine();
            PerplexityResult ppl = PerplexityCommand.Evaluate(loaded.Model, loaded.Tokenizer!, GuardedFile.ReadAllText(textPath, GuardedFile.TextCorpusBytes), "<|endoftext|>", PerplexityProtocol.Document, c.MaxSequenceLength, cancel);
            Console.WriteLine($"Perplexity on the bundled TinyStories slice ({ppl.Sequences} stories, {ppl.ScoredTokens:N0} scored tokens, per-document protocol): {ppl.Perplexity:F4}");
            return ExitCodes.Success;
        }));
        return command;
    }
}
