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
        var quant = new QuantizationCliOptions();
        var output = new Option<string>("--output") { Description = "The quantized checkpoint to write (.safetensors; packed weights, scales and the configuration in its metadata).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object: output, config, bytes, fp32_weight_bytes, calib_docs, seconds." };
        var command = new Command("quantize", "Quantize a model to a named configuration and save it as a safetensors checkpoint (memory-mapped on load, no recalibration). Load it with --model FILE.");
        model.AddTo(command);
        quant.AddTo(command);
        command.Options.Add(output);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using LoadedModel loaded = model.Load(parse, cancel);
            QuantizationConfig config = quant.ReadConfig(parse);
            if (config.StaticActivationScales)
                throw new AgileQuantException($"{config.Name}: quantized checkpoints do not store TRIP's static activation scales yet; use it with perplexity or accuracy --config.");
            if (config.Rounding == WeightRounding.Gptq && parse.GetValue(quant.CalibText) is null)
                throw new AgileQuantException($"{config.Name} uses GPTQ: pass calibration text with --calib-text PATH (and --calib-docs N).");
            QuantizationRun run = config.Rounding == WeightRounding.Gptq
                ? quant.Read(parse, loaded, ModelOptions.RequireTokenizer(loaded), parse.GetValue(quant.CalibText)!, parse.GetValue(quant.CalibSeparator), 0)
                : new QuantizationRun(config, parse.GetValue(quant.GroupSize), [], 0);
            TransformerModel quantized = run.Build(loaded.Model, cancel);
            string path = parse.GetValue(output)!;
            QuantizedCheckpointWriter.Write(path, quantized, config.Name, new Dictionary<string, string>
            {
                ["agilequant.source"] = Path.GetFileName(loaded.SourcePath),
                ["agilequant.calibration_documents"] = run.CalibrationDocuments.ToString(System.Globalization.CultureInfo.InvariantCulture),
            });
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
}
