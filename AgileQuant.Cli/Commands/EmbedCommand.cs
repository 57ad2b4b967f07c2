using System.CommandLine;
using System.Text.Json;
using AgileQuant.Core.Encoder;
using AgileQuant.Core.Quantization;
using AgileQuant.Models;
using AgileQuant.Models.Embeddings;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant embed</c>: sentence embeddings (one JSON object per input line) from a BERT-family encoder.</summary>
internal static class EmbedCommand
{
    public static Command Create()
    {
        var model = new EncoderModelOptions();
        var texts = new Argument<string[]>("text") { Description = "Texts to embed (default: one per line of standard input).", Arity = ArgumentArity.ZeroOrMore };
        var quant = new Option<string>("--quant") { Description = "Quantization scheme (FP32, W8A8, W8A8-GPTQ, W4A8-RTN, W4A8-GPTQ, ...).", DefaultValueFactory = _ => "FP32" };
        var calib = new Option<string?>("--calib-text") { Description = "Calibration text for GPTQ, one sentence per non-empty line." };
        var calibLines = new Option<int>("--calib-lines") { Description = "Calibration lines used from --calib-text.", DefaultValueFactory = _ => 128 };
        var smoothAlpha = new Option<double>("--smooth-alpha") { Description = "SmoothQuant α applied before quantizing, from the calibration text (0 = off; docs/accuracy-encoder.md: W8A8-GPTQ with 0.7).", DefaultValueFactory = _ => 0 };
        var similarity = new Option<bool>("--similarity") { Description = "Print the cosine-similarity matrix of the inputs instead of the vectors." };
        var command = new Command("embed", "Embed sentences with a BERT-family encoder (all-MiniLM-L6-v2): mean pooling + L2 normalisation, optionally quantized.")
        {
            texts, quant, calib, calibLines, smoothAlpha, similarity,
        };
        model.AddTo(command);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            QuantizationConfig config = EncoderSchemes.Parse(parse.GetValue(quant)!);
            string[] inputs = parse.GetValue(texts) is { Length: > 0 } given ? given : ReadStandardInput();
            if (inputs.Length == 0) throw new ArgumentException("No text to embed: pass texts as arguments or on standard input.");
            string[] calibration = parse.GetValue(calib) is { } path
                ? GuardedFile.ReadAllLines(path, GuardedFile.TextCorpusBytes).Select(l => l.Trim()).Where(l => l.Length > 0).Take(parse.GetValue(calibLines)).ToArray()
                : [];
            SentenceEncoder encoder = EncoderModelOptions.Quantize(model.Load(parse), config, calibration, cancel, parse.GetValue(smoothAlpha));
            float[][] vectors = inputs.Select(t =>
            {
                cancel.ThrowIfCancellationRequested();
                return encoder.Embed(t);
            }).ToArray();
            if (parse.GetValue(similarity))
                for (int i = 0; i < vectors.Length; i++)
                    Console.WriteLine(string.Join(' ', vectors.Select(v => Core.Encoder.EmbeddingComparison.Cosine(vectors[i], v).ToString("F4", System.Globalization.CultureInfo.InvariantCulture))));
            else
                for (int i = 0; i < vectors.Length; i++)
                    Console.WriteLine(JsonSerializer.Serialize(new { text = inputs[i], tokens = encoder.Tokenize(inputs[i]).Length, quant = config.Name, embedding = vectors[i] }));
            return ExitCodes.Success;
        }));
        return command;
    }

    private static string[] ReadStandardInput()
    {
        if (!Console.IsInputRedirected) return [];
        var lines = new List<string>();
        while (Console.In.ReadLine() is { } line)
            if (line.Trim().Length > 0) lines.Add(line.Trim());
        return lines.ToArray();
    }
}
