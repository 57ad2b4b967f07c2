using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models;
using AgileQuant.Cli.Bench;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant stress</c>: repeat-and-compare checks for places where a timing-dependent fault could hide (an
/// emulator, a loaded machine). <c>stress model</c> writes a seeded random LLaMA GGUF; <c>stress load</c> loads one model
/// file many times and checks every load against a reference written by another machine: an ISA-independent digest of
/// the loaded weights (exact) and a short greedy decode (tokens exact, logits within a tolerance, since another
/// instruction set sums floats in another order), and every load's logits against the first load's (bit for bit: one
/// machine and kernel give one result whatever the timing); <c>stress kernel</c>
/// multiplies large weights with one SIMD kernel again and again and checks every result against its scalar twin.
/// See docs/arm64-emulation.md.
/// </summary>
internal static class StressCommand
{
    public static Command Create()
    {
        var stress = new Command("stress", "Repeat-and-compare checks: `stress model` writes a seeded random LLaMA GGUF; `stress load` loads a model many times against a reference (weights digest and a short decode); `stress kernel` checks a SIMD kernel against its scalar twin on large weights many times.");
        stress.Subcommands.Add(CreateModel());
        stress.Subcommands.Add(CreateLoad());
        stress.Subcommands.Add(CreateKernel());
        return stress;
    }

    // ---- stress model -----------------------------------------------------------------------------------------------

    private static readonly Dictionary<string, GgmlType> ModelTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        ["F32"] = GgmlType.F32, ["F16"] = GgmlType.F16, ["Q8_0"] = GgmlType.Q8_0, ["Q4_0"] = GgmlType.Q4_0,
    };

    private static Command CreateModel()
    {
        var output = new Option<string>("--output") { Description = "The .gguf file to write.", Required = true };
        var type = new Option<string>("--type") { Description = "Type of every matrix, the token embedding and the LM head: F32, F16, Q8_0 or Q4_0 (norms stay F32).", DefaultValueFactory = _ => "Q8_0" };
        type.AcceptOnlyFromAmong([.. ModelTypes.Keys]);
        var dim = new Option<int>("--dim") { Description = "Hidden size.", DefaultValueFactory = _ => 768 };
        var ffn = new Option<int>("--ffn") { Description = "Feed-forward (intermediate) size.", DefaultValueFactory = _ => 2048 };
        var heads = new Option<int>("--heads") { Description = "Attention heads.", DefaultValueFactory = _ => 12 };
        var layers = new Option<int>("--layers") { Description = "Layers.", DefaultValueFactory = _ => 4 };
        var vocab = new Option<int>("--vocab") { Description = "Vocabulary size (id-only placeholder pieces).", DefaultValueFactory = _ => 8000 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights.", DefaultValueFactory = _ => 7 };
        var command = new Command("model", "Write a seeded random LLaMA model as GGUF (weights U(-a, a), a = 1/sqrt(fan-in); norms 1), by default the shape of issue 29: dim 768, ffn 2048, 12 heads, 4 layers, vocab 8000.");
        foreach (Option o in new Option[] { output, type, dim, ffn, heads, layers, vocab, seed }) command.Options.Add(o);
        command.SetAction(parse => CliErrors.Run(parse, _ =>
        {
            var config = new TransformerConfig
            {
                Family = "llama", VocabSize = parse.GetValue(vocab), HiddenSize = parse.GetValue(dim), IntermediateSize = parse.GetValue(ffn),
                NumLayers = parse.GetValue(layers), NumHeads = parse.GetValue(heads), NumKvHeads = parse.GetValue(heads), MaxSequenceLength = 256,
                Norm = NormKind.RmsNorm, NormEpsilon = 1e-5f, Positions = PositionKind.Rotary, RotaryPairing = RotaryPairing.Adjacent, Mlp = MlpKind.SwiGlu,
            };
            config.Validate();
            string path = parse.GetValue(output)!;
            SyntheticGgufModel.Write(path, new SyntheticModelShape("stress", config), ModelTypes[parse.GetValue(type)!], parse.GetValue(seed));
            Console.WriteLine($"wrote {path}: {parse.GetValue(type)!.ToUpperInvariant()}, dim {config.HiddenSize}, ffn {config.IntermediateSize}, {config.NumHeads} heads, {config.NumLayers} layers, vocab {config.VocabSize}, {new FileInfo(path).Length:N0} bytes");
            return ExitCodes.Success;
        }));
        return command;
    }

    // ---- stress load ------------------------------------------------------------------------------------------------

    private static Command CreateLoad()
    {
        var model = new Option<string>("--model") { Description = "The model to load (any format ModelLoader reads; a .gguf in CI).", Required = true };
        var loads = new Option<int>("--loads") { Description = "Loads to run.", DefaultValueFactory = _ => 1 };
        var parallel = new Option<int>("--parallel") { Description = "Loads at a time in this process.", DefaultValueFactory = _ => 1 };
        var prompt = new Option<string>("--prompt-tokens") { Description = "Comma-separated token ids the decode starts from.", DefaultValueFactory = _ => "1,5,9" };
        var decode = new Option<int>("--decode") { Description = "Greedy decode steps after each load.", DefaultValueFactory = _ => 4 };
        var write = new Option<string?>("--write-reference") { Description = "Write the first load's digest, tokens and logits to this JSON file (on the reference machine)." };
        var reference = new Option<string?>("--reference") { Description = "Compare every load with this JSON file from --write-reference." };
        // Another instruction set sums floats in another order, so a few activation codes may round the other way and move
        // the logits by a few percent (measured in docs/arm64-emulation.md); a wrong weight moves them by far more.
        var tolerance = new Option<double>("--tolerance") { Description = "Largest |logit - reference logit| allowed, as a fraction of the step's largest |reference logit|.", DefaultValueFactory = _ => 0.1 };
        var garbage = new Option<bool>("--allocate-garbage") { Description = "Allocate short-lived small objects on another thread throughout, so that collections (frequent with a small DOTNET_GCgen0size) stop and compact the loads at many points." };
        var kernel = ModelOptions.KernelOption();
        var threads = new Option<int>("--threads") { Description = "Threads per matrix multiplication (0 = one per processor).", DefaultValueFactory = _ => 0 };
        var command = new Command("load", "Load a model --loads times (--parallel at a time), each followed by a short greedy decode; compare each with --reference. Exit code 3 when a load failed or differed.");
        foreach (Option o in new Option[] { model, loads, parallel, prompt, decode, write, reference, tolerance, garbage, kernel, threads }) command.Options.Add(o);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            int count = parse.GetValue(loads), atOnce = parse.GetValue(parallel), steps = parse.GetValue(decode);
            if (count < 1 || atOnce < 1 || steps < 1) throw new AgileQuantException("--loads, --parallel and --decode must be at least 1.");
            int[] promptTokens = LogitsCommand.ParseTokens(parse.GetValue(prompt)!);
            string path = parse.GetValue(model)!;
            var options = new ModelLoadOptions { KernelOptions = ModelOptions.ReadKernelOptions(parse, kernel, threads) };
            LoadCheck? expected = parse.GetValue(reference) is { } referencePath ? LoadCheck.Read(referencePath) : null;
            double relativeTolerance = parse.GetValue(tolerance);
            int failed = 0, mismatched = 0;
            string? firstLogits = null; // every load on this machine must decode bit for bit alike
            using var stopGarbage = new CancellationTokenSource();
            Task garbageThread = parse.GetValue(garbage) ? Task.Factory.StartNew(() => AllocateGarbage(stopGarbage.Token), TaskCreationOptions.LongRunning) : Task.CompletedTask;
            for (int first = 0; first < count; first += atOnce)
            {
                cancel.ThrowIfCancellationRequested();
                int batch = Math.Min(atOnce, count - first);
                // (result, or the one-line reason the load failed) for loads first .. first + batch - 1, run at the same time
                Task<(LoadCheck? Check, string? Error)>[] running = Enumerable.Range(0, batch)
                    .Select(_ => Task.Run(() => LoadAndDecode(path, options, promptTokens, steps, cancel), cancel)).ToArray();
                Task.WaitAll(running, cancel);
                for (int i = 0; i < batch; i++)
                {
                    (LoadCheck? check, string? error) = running[i].Result;
                    string label = $"load {first + i + 1}/{count}";
                    if (check is null)
                    {
                        failed++;
                        Console.WriteLine($"{label}: FAILED: {error}");
                        continue;
                    }
                    if (first + i == 0 && parse.GetValue(write) is { } writePath) check.Write(writePath);
                    string logitsDigest = WeightsDigest.Of(check.Logits);
                    firstLogits ??= logitsDigest;
                    (string? difference, double worst) = expected is null ? (null, double.NaN) : check.Compare(expected, relativeTolerance);
                    if (difference is null && logitsDigest != firstLogits) difference = $"logits digest {logitsDigest}, the first load's {firstLogits}";
                    if (difference is not null) mismatched++;
                    string drift = double.IsNaN(worst) ? "" : $", max |logit - reference| / max |reference| {worst.ToString("G3", CultureInfo.InvariantCulture)}";
                    Console.WriteLine($"{label}: {(difference is null ? "ok" : "MISMATCH: " + difference)} (weights {check.Digest}, logits {logitsDigest}, tokens {string.Join(' ', check.Tokens)}{drift})");
                }
            }
            stopGarbage.Cancel();
            garbageThread.Wait();
            Console.WriteLine($"stress load: {count} loads, {failed} failed, {mismatched} mismatched{(expected is null ? " (no --reference: nothing compared)" : "")}; "
                + $"collections gen0 {GC.CollectionCount(0)}, gen1 {GC.CollectionCount(1)}, gen2 {GC.CollectionCount(2)}");
            return failed + mismatched == 0 ? ExitCodes.Success : ExitCodes.CheckFailed;
        }));
        return command;
    }

    // One load through the public API, its weights digest, then `steps` greedy steps from the prompt; a load that throws
    // (the fault this command hunts) is reported, not rethrown, so the remaining loads still run.
    private static (LoadCheck?, string?) LoadAndDecode(string path, ModelLoadOptions options, int[] prompt, int steps, CancellationToken cancel)
    {
        try
        {
            using LoadedModel loaded = ModelLoader.Load(path, options, null, cancel);
            string digest = WeightsDigest.Of(loaded.Model.Weights);
            InferenceContext context = loaded.CreateContext();
            var tokens = new int[steps];
            var logits = new float[steps][]; // (steps, vocab)
            float[] last = context.Forward(prompt);
            for (int s = 0; s < steps; s++)
            {
                logits[s] = last;
                tokens[s] = ArgMax(last);
                if (s + 1 < steps) last = context.Forward([tokens[s]]);
            }
            return (new LoadCheck(digest, tokens, logits), null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return (null, e.GetType().Name + ": " + e.Message);
        }
    }

    // Short-lived 64-byte arrays, a few kept for a moment so that each collection has survivors to move, until cancelled.
    private static void AllocateGarbage(CancellationToken stop)
    {
        var recent = new byte[64][];
        for (long i = 0; !stop.IsCancellationRequested; i++) recent[i & 63] = new byte[64];
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>What one load produced: the weights digest, the greedy tokens and the logits (steps, vocab) they came from.</summary>
    private sealed record LoadCheck(string Digest, int[] Tokens, float[][] Logits)
    {
        public void Write(string path)
        {
            using FileStream stream = File.Create(path);
            using var writer = new Utf8JsonWriter(stream);
            writer.WriteStartObject();
            writer.WriteString("digest", Digest);
            writer.WriteStartArray("tokens");
            foreach (int token in Tokens) writer.WriteNumberValue(token);
            writer.WriteEndArray();
            writer.WriteStartArray("logits");
            foreach (float[] step in Logits)
            {
                writer.WriteStartArray();
                foreach (float v in step) writer.WriteNumberValue(v);
                writer.WriteEndArray();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        public static LoadCheck Read(string path)
        {
            try
            {
                using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(path));
                JsonElement root = json.RootElement;
                return new LoadCheck(root.GetProperty("digest").GetString()!,
                    root.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
                    root.GetProperty("logits").EnumerateArray().Select(s => s.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray());
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new AgileQuantException($"--reference {path}: expected the JSON that --write-reference writes (digest, tokens, logits): {e.Message}");
            }
        }

        // (null, or what differs first) and the largest max |logit - reference| / max |reference logit| over the steps:
        // a match has the same digest and tokens and every step's logits within `tolerance` · max |reference logit|.
        public (string? Difference, double WorstRatio) Compare(LoadCheck reference, double tolerance)
        {
            if (Digest != reference.Digest) return ($"weights digest {Digest}, reference {reference.Digest}", double.NaN);
            if (!Tokens.SequenceEqual(reference.Tokens) || Logits.Length != reference.Logits.Length)
                return ($"tokens {string.Join(' ', Tokens)}, reference {string.Join(' ', reference.Tokens)}", double.NaN);
            double worstRatio = 0;
            for (int s = 0; s < Logits.Length; s++)
            {
                float[] actual = Logits[s], wanted = reference.Logits[s];
                if (actual.Length != wanted.Length) return ($"step {s}: {actual.Length} logits, reference {wanted.Length}", double.NaN);
                double scale = wanted.Max(v => Math.Abs((double)v)), worst = 0;
                for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs((double)actual[i] - wanted[i]));
                worstRatio = Math.Max(worstRatio, worst / scale);
                if (!(worst <= tolerance * scale))
                    return ($"step {s}: max |logit - reference| {worst.ToString("G4", CultureInfo.InvariantCulture)} > {tolerance} x {scale.ToString("G4", CultureInfo.InvariantCulture)}", worstRatio);
            }
            return (null, worstRatio);
        }
    }

    // ---- stress kernel ----------------------------------------------------------------------------------------------

    private static Command CreateKernel()
    {
        var shape = new Option<string>("--shape") { Description = "OUTxIN of the weights.", DefaultValueFactory = _ => "4096x4096" };
        var format = new Option<string>("--format") { Description = "W8A8, W4A8 or W4A4 (4-bit: asymmetric groups of 32, as `bench kernel` makes them).", DefaultValueFactory = _ => "W4A8" };
        format.AcceptOnlyFromAmong("W8A8", "W4A8", "W4A4", "w8a8", "w4a8", "w4a4");
        var tokens = new Option<int>("--tokens") { Description = "Tokens per multiplication (1: GEMV).", DefaultValueFactory = _ => 1 };
        var copies = new Option<int>("--copies") { Description = "Weight matrices made (each a separate large allocation).", DefaultValueFactory = _ => 4 };
        var repeats = new Option<int>("--repeats") { Description = "Multiplications per copy.", DefaultValueFactory = _ => 3 };
        var kernel = ModelOptions.KernelOption();
        var threads = new Option<int>("--threads") { Description = "Threads (0 = one per processor).", DefaultValueFactory = _ => 1 };
        var command = new Command("kernel", "Multiply --copies large weight matrices --repeats times each with one kernel and check every result against the scalar twin (exit code 3 on a difference).");
        foreach (Option o in new Option[] { shape, format, tokens, copies, repeats, kernel, threads }) command.Options.Add(o);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            (int rows, int cols) = BenchCommand.ParseShape(parse.GetValue(shape)!);
            string fmt = parse.GetValue(format)!.ToUpperInvariant();
            int n = parse.GetValue(tokens), copyCount = parse.GetValue(copies), repeatCount = parse.GetValue(repeats);
            if (n < 1 || copyCount < 1 || repeatCount < 1) throw new AgileQuantException("--tokens, --copies and --repeats must be at least 1.");
            int bits = fmt == "W4A4" ? 4 : 8;
            KernelSet simd = KernelSelector.Create(ModelOptions.ReadKernelOptions(parse, kernel, threads) with { ActivationBits = bits });
            KernelSet scalar = KernelSelector.Create(new KernelOptions { Preference = KernelPreference.Scalar, Threads = 1, ActivationBits = bits });
            var random = new Random(1);
            var weights = new IWeightMatrix[copyCount];
            for (int i = 0; i < copyCount; i++) weights[i] = BenchCommand.Make(fmt, rows, cols, random);
            float[] x = Enumerable.Range(0, n * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray(); // (n, cols)
            int mismatched = 0;
            double worstRelative = 0;
            for (int c = 0; c < copyCount; c++)
            {
                var expected = new float[n * rows]; // (n, rows)
                scalar.MatMul(weights[c], x, expected, n);
                double scale = expected.Max(v => Math.Abs((double)v));
                for (int r = 0; r < repeatCount; r++)
                {
                    cancel.ThrowIfCancellationRequested();
                    var actual = new float[n * rows + 1]; // one guard element past (n, rows): a kernel must not write beyond
                    actual[^1] = GuardValue;
                    simd.MatMul(weights[c], x, actual.AsSpan(0, n * rows), n);
                    double worst = 0;
                    for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs((double)actual[i] - expected[i]));
                    worstRelative = Math.Max(worstRelative, scale > 0 ? worst / scale : worst);
                    // Integer group sums are exact and the float epilogue differs only in summation order: 1e-5 of the
                    // largest output is far above that and far below a wrong row or block.
                    if (!(worst <= KernelTolerance * scale) || actual[^1] != GuardValue)
                    {
                        mismatched++;
                        Console.WriteLine($"copy {c + 1}, run {r + 1}: MISMATCH: max |y - scalar y| {worst:G4} (largest |y| {scale:G4}){(actual[^1] != GuardValue ? ", wrote past the output" : "")}");
                    }
                }
            }
            string name = simd.KernelFor(weights[0]).Name;
            Console.WriteLine($"stress kernel: {name}, {rows}x{cols}, {n} token(s), {copyCount} copies x {repeatCount} runs, {mismatched} mismatched, max |y - scalar y| / max |y| = {worstRelative:G3}");
            return mismatched == 0 ? ExitCodes.Success : ExitCodes.CheckFailed;
        }));
        return command;
    }

    private const float GuardValue = 12345.5f;

    private const double KernelTolerance = 1e-5;
}
