using System.CommandLine;
using AgileQuant.Core;
using AgileQuant.Models;
using AgileQuant.Models.Gguf;
using AgileQuant.Models.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant export-gguf</c>: writes any LLaMA-family model we can load as a GGUF v3 file (F32, F16, Q8_0, Q4_0,
/// Q4_K or Q6_K matrices) so the same weights run in llama.cpp (LLamaSharp) and here.
/// </summary>
internal static class ExportGgufCommand
{
    private static readonly Dictionary<string, GgmlType> Types = new(StringComparer.OrdinalIgnoreCase)
    {
        ["F32"] = GgmlType.F32, ["F16"] = GgmlType.F16, ["Q8_0"] = GgmlType.Q8_0, ["Q4_0"] = GgmlType.Q4_0, ["Q4_K"] = GgmlType.Q4_K, ["Q6_K"] = GgmlType.Q6_K,
    };

    public static Command Create()
    {
        var model = new ModelOptions();
        var type = new Option<string>("--type") { Description = "Type of the weight matrices and the token embedding: F32, F16, Q8_0, Q4_0, Q4_K or Q6_K (norms stay F32; rows the type's blocks do not divide fall back as llama-quantize does: Q4_K to Q5_0, Q6_K to Q8_0, then F16).", DefaultValueFactory = _ => "Q4_0" };
        type.AcceptOnlyFromAmong([.. Types.Keys]);
        var headType = new Option<string?>("--head-type") { Description = "Type of the LM head (output.weight) when it differs from --type, e.g. Q6_K (llama-quantize's head type for Q4_0 and Q4_K files)." };
        headType.AcceptOnlyFromAmong([.. Types.Keys]);
        var output = new Option<string>("--output") { Description = "The .gguf file to write.", Required = true };
        var placeholder = new Option<bool>("--placeholder-vocab") { Description = "For a model without a SentencePiece-style vocabulary: write id-only pieces (▁tokN); llama.cpp then runs token ids, not text." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object: output, type, head_type, bytes, vocabulary, seconds." };
        var command = new Command("export-gguf", "Write a LLaMA-family model (llama2.c, Hugging Face, quantized checkpoint or GGUF) as GGUF v3 for llama.cpp: F32, F16, Q8_0, Q4_0, Q4_K or Q6_K weights and its vocabulary (SentencePiece; a GGUF model's own, SentencePiece or byte-level BPE; a Hugging Face tokenizer.json as llama.cpp's convert_hf_to_gguf.py writes it) and chat template.");
        model.AddTo(command);
        command.Options.Add(type);
        command.Options.Add(headType);
        command.Options.Add(output);
        command.Options.Add(placeholder);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string path = parse.GetValue(output)!;
            string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
            if (directory is not null && !Directory.Exists(directory))
                throw new AgileQuantException($"--output {path}: the directory {directory} does not exist.");
            using LoadedModel loaded = model.Load(parse, cancel);
            int vocabSize = loaded.Model.Config.VocabSize;
            // A Hugging Face tokenizer.json the model's tokenizer was read from (a tokenizer.model beside it is read first).
            string? tokenizerJson = loaded.TokenizerSource?.Paths is { } paths && !paths.Any(p => Path.GetFileName(p) == HfLlamaTokenizerLoader.ModelFileName)
                ? paths.FirstOrDefault(p => Path.GetFileName(p).Equals("tokenizer.json", StringComparison.OrdinalIgnoreCase)) : null;
            (GgufVocabulary vocabulary, string vocabularyKind) = loaded.Tokenizer switch
            {
                // A GGUF model's own vocabulary (SentencePiece or byte-level BPE), copied with its special ids.
                not null when loaded.Format == "gguf" && loaded.TokenizerSource is null => (GgufVocabulary.FromGguf(GgufFile.Read(loaded.SourcePath)), "gguf"),
                // As llama.cpp's converter writes it: SentencePiece scores from the merges, or byte-level BPE with its merges and pre-tokenizer.
                not null when tokenizerJson is not null => (GgufVocabulary.FromTokenizerJson(tokenizerJson, vocabSize), "tokenizer.json"),
                ScoredMergeTokenizer scored => (GgufVocabulary.FromTokenizer(scored, vocabSize), "sentencepiece"),
                _ when parse.GetValue(placeholder) => (GgufVocabulary.Placeholder(vocabSize), "placeholder"),
                null => throw new AgileQuantException($"{loaded.SourcePath} has no tokenizer to export; pass --tokenizer PATH, or --placeholder-vocab for an id-only vocabulary."),
                var other => throw new AgileQuantException($"GGUF export writes SentencePiece-style (scored-merge) vocabularies; this model's tokenizer is {other.GetType().Name}. Pass --placeholder-vocab for an id-only vocabulary."),
            };
            GgmlType weightType = Types[parse.GetValue(type)!];
            GgmlType? outputType = parse.GetValue(headType) is { } h ? Types[h] : null;
            cancel.ThrowIfCancellationRequested();
            // Written beside the target, then moved over it: an interrupted export never leaves a truncated .gguf.
            string partial = path + ".partial";
            try
            {
                GgufModelWriter.Write(partial, loaded.Model.Weights, vocabulary, new GgufWriteOptions
                {
                    WeightType = weightType, OutputType = outputType, Name = Path.GetFileNameWithoutExtension(loaded.SourcePath),
                    ChatTemplate = loaded.ChatTemplateText,
                });
                File.Move(partial, path, overwrite: true);
            }
            finally
            {
                if (File.Exists(partial)) File.Delete(partial);
            }
            long size = new FileInfo(path).Length;
            if (parse.GetValue(json))
            {
                var fields = new Dictionary<string, object?>
                {
                    ["output"] = path, ["type"] = weightType.ToString(), ["head_type"] = (outputType ?? weightType).ToString(), ["bytes"] = size,
                    ["vocabulary"] = vocabularyKind, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
                };
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(fields));
            }
            else Console.Out.WriteLine($"wrote {path}: {weightType} weights, {(outputType ?? weightType)} head, {vocabularyKind} vocabulary, {size:N0} bytes");
            return ExitCodes.Success;
        }));
        return command;
    }
}
