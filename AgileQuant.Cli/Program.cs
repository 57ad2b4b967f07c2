using System.CommandLine;
using AgileQuant.Cli.Commands;

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
        ProgressLine.Suppressed = args.Contains("--json");
        // @FILE response files keep quoted tokens whole and cannot include each other (ResponseFiles).
        ParseResult parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = ResponseFiles.TryReadTokens });
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) Console.Error.WriteLine("agilequant: " + error.Message);
            Console.Error.WriteLine("Run 'agilequant --help' (or 'agilequant COMMAND --help') for usage.");
            return ExitCodes.Usage;
        }
        return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }) is int code ? code : ExitCodes.Success;
    }
}
