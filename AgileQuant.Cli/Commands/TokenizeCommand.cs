using System.CommandLine;
using System.Text;
using System.Text.Json;
using AgileQuant.Models;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant tokenize</c>: the token ids of a text under a model's tokenizer (a GGUF file, vocabulary-only ones
/// included; a Hugging Face directory or tokenizer.json; a SentencePiece .model; a llama2.c tokenizer .bin).
/// </summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "A GGUF file (a vocabulary-only file is enough), a Hugging Face model directory or tokenizer.json, a SentencePiece tokenizer.model, or a llama2.c tokenizer.bin.",
            Required = true,
        };
        var text = new Option<string[]>("--text") { Description = "Text to tokenize (repeat for several; each gives one result line).", AllowMultipleArgumentsPerToken = false };
        var textFile = new Option<string[]>("--text-file") { Description = "File whose whole content (UTF-8) is the text to tokenize (repeat for several)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per text: {\"ids\": [...]}." };
        var addBos = new Option<bool>("--add-bos") { Description = "Prepend the BOS token the tokenizer declares (default: no BOS)." };
        var parseSpecial = new Option<bool>("--parse-special") { Description = "Encode special tokens written in the text (such as <|im_end|>) as their ids (default: as plain text)." };
        var command = new Command("tokenize", "Print the token ids of a text under a model's tokenizer, without BOS unless --add-bos.")
        {
            model, text, textFile, json, addBos, parseSpecial,
        };
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            string[] texts = parse.GetValue(text) ?? [];
            string[] files = parse.GetValue(textFile) ?? [];
            if (texts.Length > 0 == files.Length > 0)
                throw new ArgumentException("Pass the text with --text or --text-file (one of the two).");
            string[] inputs = texts.Length > 0 ? texts : files.Select(ReadText).ToArray();

            // BOS comes from the tokenizer's declaration, not from each format's own add-BOS rules, so --add-bos means the same everywhere.
            LoadedTokenizer loaded = TokenizerFile.Load(parse.GetValue(model)!, addBos: false, parseSpecialTokens: parse.GetValue(parseSpecial));
            int? bos = null;
            if (parse.GetValue(addBos))
                bos = loaded.Special.Bos ?? throw new ArgumentException($"--add-bos: the tokenizer of {parse.GetValue(model)} declares no BOS token.");
            foreach (string input in inputs)
            {
                cancel.ThrowIfCancellationRequested();
                IReadOnlyList<int> encoded = loaded.Tokenizer.EncodeToIds(input);
                int[] ids = bos is int b ? [b, .. encoded] : [.. encoded];
                Console.Out.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(new Dictionary<string, int[]> { ["ids"] = ids }) : string.Join(' ', ids));
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--text-file: no file at {path}.", path);
        return GuardedFile.ReadAllText(path, GuardedFile.TextCorpusBytes, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true));
    }
}
