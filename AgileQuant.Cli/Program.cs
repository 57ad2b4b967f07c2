using System.CommandLine;
using AgileQuant.Cli.Commands;
using AgileQuant.Core;

namespace AgileQuant.Cli;

/// <summary>Entry point of the <c>agilequant</c> tool.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("agilequant: run, evaluate and benchmark decoder LLMs (LLaMA, OPT, BLOOM) with 4/8-bit weights and activations on the CPU."
            + Environment.NewLine + Environment.NewLine + ExitCodes.HelpText)
        {
            DemoCommand.Create(),
            GenerateCommand.Create(),
            ChatCommand.Create(),
            ServeCommand.Create(),
            PerplexityCommand.Create(),
            AccuracyCommand.Create(),
            QuantizeCommand.Create(),
            ExportGgufCommand.Create(),
            LogitsCommand.Create(),
            BenchCommand.Create(),
            EmbedCommand.Create(),
            EncoderAccuracyCommand.Create(),
            TokenizeCommand.Create(),
            InfoCommand.Create(),
            SelfTestCommand.Create(),
            StressCommand.Create(),
        };
        root.Options.Add(CliErrors.VerboseOption);
        List<string> arguments;
        try
        {
            arguments = ResponseFiles.Expand(args);
        }
        catch (AgileQuantException e)
        {
            Console.Error.WriteLine("agilequant: error: " + e.Message);
            return ExitCodes.InvalidInput;
        }
        ProgressLine.Suppressed = arguments.Contains("--json");
        // Response files are already expanded: what is left that starts with '@' is an argument, not a file.
        ParseResult parse = root.Parse(arguments, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) Console.Error.WriteLine("agilequant: " + error.Message);
            Console.Error.WriteLine("Run 'agilequant --help' (or 'agilequant COMMAND --help') for usage.");
            return ExitCodes.Usage;
        }
        return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }) is int code ? code : ExitCodes.Success;
    }
}
