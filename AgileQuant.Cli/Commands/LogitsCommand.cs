using System.CommandLine;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Models;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant logits</c>: the logits of every position of a token sequence, as JSON.</summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var tokens = new Option<string>("--tokens") { Description = "Comma-separated token ids, e.g. 1,403,407 (include BOS yourself).", Required = true };
        var json = new Option<bool>("--json") { Description = "Write {\"logits\": [[...], ...]} to stdout (the only output format; accepted for scripts)." };
        var command = new Command("logits", "Print the logits of every position of a token sequence as JSON (no tokenizer needed).");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            int[] ids = ParseTokens(parse.GetValue(tokens)!);
            using LoadedModel loaded = model.Load(parse, cancel);
            float[] logits = loaded.Model.CreateContext().Forward(ids, allLogits: true);
            int vocab = loaded.Model.Config.VocabSize;
            using var stdout = Console.OpenStandardOutput();
            using (var writer = new Utf8JsonWriter(stdout))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("tokens");
                foreach (int id in ids) writer.WriteNumberValue(id);
                writer.WriteEndArray();
                writer.WriteStartArray("logits");
                for (int p = 0; p < ids.Length; p++)
                {
                    writer.WriteStartArray();
                    foreach (float v in logits.AsSpan(p * vocab, vocab)) writer.WriteNumberValue(v);
                    writer.WriteEndArray();
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            stdout.WriteByte((byte)'\n');
            return ExitCodes.Success;
        }));
        return command;
    }

    internal static int[] ParseTokens(string text)
    {
        string[] parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new AgileQuantException("--tokens is empty; give comma-separated token ids such as 1,403,407.");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
                throw new AgileQuantException($"--tokens: '{parts[i]}' (item {i + 1}) is not an integer token id.");
        return ids;
    }
}
