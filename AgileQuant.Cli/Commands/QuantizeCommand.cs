using System.CommandLine;
using AgileQuant.Core;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models;
using AgileQuant.Models.QuantizedCheckpoints;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant quantize</c>: writes a quantized checkpoint that loads without recalibration.</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var quant = new QuantizationCliOptions("Calibration text for GPTQ configurations (required by them): documents separated by --calib-separator, the first --calib-docs used.");
        var output = new Option<string>("--output") { Description = "The quantized checkpoint to write (.safetensors; packed weights, scales and the configuration in its metadata).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object: output, config, bytes, fp32_weight_bytes, calib_docs, seconds." };
        var command = new Command("quantize", "Quantize a model to a named configuration and save it as a safetensors checkpoint (memory-mapped on load, no recalibration) "
            + "that carries the model's tokenizer and end tokens: any command loads it alone with --model FILE. TRIP configurations are not supported here.");
        model.AddTo(command);
        quant.AddTo(command);
        command.Options.Add(output);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            // Checked before loading and quantizing, which can take minutes: the configuration, the calibration text, the output.
            QuantizationConfig config = quant.ReadConfig(parse);
            if (config.StaticActivationScales)
                throw new InvalidOptionException($"{config.Name}: quantized checkpoints do not store TRIP's static activation scales yet; use it with perplexity or accuracy --config.");
            string? calibText = parse.GetValue(quant.CalibText);
            if (config.Rounding == WeightRounding.Gptq && calibText is null)
                throw new InvalidOptionException($"{config.Name} uses GPTQ: pass calibration text with --calib-text PATH (and --calib-docs N).");
            if (calibText is not null && !File.Exists(calibText)) throw new InvalidOptionException($"--calib-text {calibText} does not exist.");
            string path = parse.GetValue(output)!;
            RequireWritable(path);
            model.Validate(parse);

            var clock = System.Diagnostics.Stopwatch.StartNew();
            using LoadedModel loaded = model.Load(parse, cancel);
            QuantizationRun run = config.Rounding == WeightRounding.Gptq
                ? quant.Read(parse, loaded, ModelOptions.RequireTokenizer(loaded), null, null, 0)
                : new QuantizationRun(config, parse.GetValue(quant.GroupSize), [], 0);
            TransformerModel quantized = run.Build(loaded.Model, cancel);
            EmbeddedTokenizer? tokenizer = EmbeddedTokenizer.From(loaded);
            if (tokenizer is null)
                Console.Error.WriteLine($"agilequant: warning: the tokenizer of {loaded.SourcePath} comes from no file this checkpoint can carry; load the checkpoint with --tokenizer PATH.");
            try
            {
                QuantizedCheckpointWriter.Write(path, quantized, config.Name, new Dictionary<string, string>
                {
                    ["agilequant.source"] = Path.GetFileName(loaded.SourcePath),
                    ["agilequant.calibration_documents"] = run.CalibrationDocuments.ToString(System.Globalization.CultureInfo.InvariantCulture),
                }, tokenizer);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The writer goes through a temporary file beside the output; the message names the output only.
                string reason = e is UnauthorizedAccessException ? "permission denied" : e.Message.Split(" '")[0].TrimEnd(' ', ':');
                throw new IOException($"cannot write --output {path}: {reason}", e);
            }
            long size = new FileInfo(path).Length;
            if (parse.GetValue(json))
            {
                var fields = new Dictionary<string, object?>
                {
                    ["output"] = path, ["config"] = config.Name, ["bytes"] = size, ["fp32_weight_bytes"] = loaded.Model.Weights.WeightBytes,
                    ["calib_docs"] = run.CalibrationDocuments, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
                };
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(fields));
            }
            else Console.Out.WriteLine($"wrote {path}: {config.Name}, {size:N0} bytes (FP32 weights: {loaded.Model.Weights.WeightBytes:N0} bytes)");
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>Refuses an output path that cannot be written (missing folder, a directory, read-only), by creating and deleting a probe file beside it.</summary>
    private static void RequireWritable(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new InvalidOptionException($"--output {path} is a directory; name the checkpoint file to write.");
        string folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new InvalidOptionException($"--output {path}: the folder {folder} does not exist.");
        if (File.Exists(full) && new FileInfo(full).IsReadOnly) throw new InvalidOptionException($"--output {path} exists and is read-only.");
        string probe = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.probe");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
            if (File.Exists(full)) using (File.Open(full, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOptionException($"--output {path} cannot be written: the folder {folder} or the file refuses writing ({e.GetType().Name}).");
        }
    }
}
