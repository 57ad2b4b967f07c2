using System.CommandLine;
using AgileQuant.Cli.Server;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Embeddings;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant serve</c>: an OpenAI-compatible HTTP server over one loaded model (<see cref="OpenAiServer"/>).</summary>
internal static class ServeCommand
{
    /// <summary>The line printed on stdout once the server listens (scripts and tests wait for it).</summary>
    internal const string ListeningPrefix = "agilequant: listening on ";

    public static Command Create()
    {
        var model = new ModelOptions();
        model.Model.Required = false;
        model.Model.Description = "The generative model behind /v1/chat/completions and /v1/completions: a llama2.c .bin, a Hugging Face folder, a .gguf or a quantized checkpoint.";
        var host = new Option<string>("--host") { Description = "Address to listen on: an IP address, or localhost (default 127.0.0.1).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on; 0 picks a free one, printed on stdout (default 8080).", DefaultValueFactory = _ => 8080 };
        var parallel = new Option<int>("--parallel") { Description = "Requests generated at once (each in its own context over the shared weights); more wait (default 4).", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a free slot; more are answered 503 (default 64).", DefaultValueFactory = _ => 64 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones are answered 413 (default 1048576).", DefaultValueFactory = _ => 1L << 20 };
        var modelId = new Option<string?>("--model-id") { Description = "The model's id in /v1/models and responses (default: the file or folder name)." };
        var embeddingModel = new Option<string?>("--embedding-model") { Description = "A BERT-family sentence encoder (all-MiniLM-L6-v2) for /v1/embeddings: an ONNX file with --embedding-vocab, or a .NET assembly embedding model.onnx and vocab.txt." };
        var embeddingVocab = new Option<string?>("--embedding-vocab") { Description = "WordPiece vocab.txt of an ONNX --embedding-model." };
        var sampling = new SamplingCliOptions("Tokens generated when a request sets no max_tokens (default 256).");
        var template = new ChatTemplateOption("Format /v1/chat/completions conversations in this chat format instead of the model's own template.");
        var command = new Command("serve",
            "Serve the model over an OpenAI-compatible HTTP API: POST /v1/chat/completions and /v1/completions (\"stream\": true for server-sent events), "
            + "POST /v1/embeddings (with --embedding-model), GET /v1/models and /health. Requests may set max_tokens, temperature, top_p, top_k, min_p, "
            + "frequency_penalty, presence_penalty, repetition_penalty, seed and stop; the sampling options below are the defaults for what they leave unset. "
            + "Bad or oversized requests get 4xx JSON errors. Stops on Ctrl+C.");
        model.AddTo(command);
        foreach (Option option in new Option[] { host, port, parallel, queue, maxBody, modelId, embeddingModel, embeddingVocab }) command.Options.Add(option);
        sampling.AddTo(command);
        template.AddTo(command);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            GenerationOptions defaults = sampling.Read(parse);
            ChatTemplate? chatTemplate = template.Read(parse);
            int p = parse.GetValue(port), slots = parse.GetValue(parallel), waiting = parse.GetValue(queue);
            long bodyLimit = parse.GetValue(maxBody);
            if (p is < 0 or > 65535) throw new InvalidOptionException($"--port must be in [0, 65535], found {p}.");
            if (slots < 1) throw new InvalidOptionException($"--parallel must be ≥ 1, found {slots}.");
            if (waiting < 0) throw new InvalidOptionException($"--queue must be ≥ 0, found {waiting}.");
            if (bodyLimit < 1024) throw new InvalidOptionException($"--max-body-bytes must be ≥ 1024, found {bodyLimit}.");
            string? modelPath = parse.GetValue(model.Model), encoderPath = parse.GetValue(embeddingModel);
            if (modelPath is null && encoderPath is null) throw new CommandLineUsageException("serve needs --model PATH, --embedding-model PATH, or both.");
            if (encoderPath is not null && !encoderPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) && parse.GetValue(embeddingVocab) is null)
                throw new InvalidOptionException("--embedding-vocab is required with an ONNX --embedding-model.");
            model.Validate(parse);

            LoadedModel? loaded = modelPath is null ? null : model.Load(parse, cancel);
            try
            {
                if (loaded is not null) ModelOptions.RequireTokenizer(loaded);
                SentenceEncoder? encoder = encoderPath is null ? null
                    : encoderPath.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? SentenceEncoder.LoadFromAssembly(encoderPath)
                    : SentenceEncoder.Load(encoderPath, parse.GetValue(embeddingVocab)!);
                var settings = new ServerSettings
                {
                    Model = loaded,
                    ModelId = parse.GetValue(modelId) ?? (loaded is null ? "agilequant" : loaded.AsChatClient(new AgileQuantChatClientOptions { Template = chatTemplate }).Metadata.DefaultModelId ?? "agilequant"),
                    ChatTemplate = chatTemplate,
                    Encoder = encoder,
                    EncoderId = encoderPath is null ? "embeddings" : Path.GetFileNameWithoutExtension(encoderPath),
                    Host = parse.GetValue(host)!,
                    Port = p,
                    Parallel = slots,
                    QueueLength = waiting,
                    MaxBodyBytes = bodyLimit,
                    Defaults = defaults with { EndTokenIds = loaded?.EndTokenIds },
                };
                OpenAiServer server = OpenAiServer.StartAsync(settings, cancel).GetAwaiter().GetResult();
                try
                {
                    foreach (Uri address in server.Addresses) Console.Out.WriteLine(ListeningPrefix + address.ToString().TrimEnd('/'));
                    Console.Out.Flush();
                    server.WaitAsync(cancel).GetAwaiter().GetResult();
                }
                finally
                {
                    server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
                Console.Error.WriteLine("agilequant: server stopped");
                return ExitCodes.Success;
            }
            finally
            {
                loaded?.Dispose();
            }
        }));
        return command;
    }
}
