// ChatHost: embeds AgileQuant in an application through Microsoft.Extensions.AI.
// 1. loads a model with progress (default: the bundled stories260K), 2. streams a chat reply through IChatClient,
// 3. cancels a second reply mid-stream, 4. shows the model is still usable, 5. serves two requests concurrently.
// Usage: dotnet run --project samples/ChatHost -- [MODEL_PATH]
using AgileQuant.Intrinsics;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;

string modelPath = args.Length > 0 ? args[0] : FindBundledModel();
using LoadedModel model = await ModelLoader.LoadAsync(new ModelLoadOptions { Path = modelPath, KernelOptions = new KernelOptions { Threads = 2 } }, new LoadProgressLine());
var config = model.Model.Config;
Console.WriteLine($"Loaded {Path.GetFileName(modelPath)}: {config.Family}, {config.NumLayers} layers, vocab {config.VocabSize}, kernel {model.Model.Kernel.Name}");

// The client is a plain IChatClient: anything built on Microsoft.Extensions.AI can use it.
using IChatClient chat = model.AsChatClient();
var options = new ChatOptions { MaxOutputTokens = 80, Temperature = 0.8f, TopP = 0.95f, Seed = 42 };

Console.WriteLine("\n1) A streamed reply:");
await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync("Tell me a story about a cat", options))
{
    Console.Write(update.Text);
    if (update.FinishReason is ChatFinishReason finish) Console.Write($"  [{finish}]");
    foreach (UsageContent usage in update.Contents.OfType<UsageContent>())
        Console.Write($" [{usage.Details.InputTokenCount} prompt + {usage.Details.OutputTokenCount} generated tokens]");
}
Console.WriteLine();

Console.WriteLine("\n2) A reply cancelled after five pieces of text:");
using (var cancel = new CancellationTokenSource())
{
    int pieces = 0;
    try
    {
        await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync("Tell me a long story", options, cancel.Token))
        {
            Console.Write(update.Text);
            if (update.Text.Length > 0 && ++pieces == 5) cancel.Cancel(); // e.g. the user pressed Stop
        }
    }
    catch (OperationCanceledException)
    {
        Console.Write("  [cancelled: generation stopped before the next token]");
    }
}
Console.WriteLine();

Console.WriteLine("\n3) The same model answers again after the cancellation:");
ChatResponse again = await chat.GetResponseAsync("Tell me a story about a dog", options);
Console.WriteLine(again.Text);

Console.WriteLine("\n4) Two requests at once (each runs in its own inference context over the shared weights):");
Task<ChatResponse> first = chat.GetResponseAsync("Lily had a red ball", options);
ChatOptions otherSeed = options.Clone();
otherSeed.Seed = 7;
Task<ChatResponse> second = chat.GetResponseAsync("Tom liked to run", otherSeed);
ChatResponse[] both = await Task.WhenAll(first, second);
foreach (ChatResponse response in both) Console.WriteLine("- " + response.Text.Trim());
return 0;

// assets/models/stories260K/stories260K.bin in the repository (samples/ChatHost/bin/... walks up to it).
static string FindBundledModel()
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        string candidate = Path.Combine(dir, "assets", "models", "stories260K", "stories260K.bin");
        if (File.Exists(candidate)) return candidate;
    }
    throw new FileNotFoundException("Pass a model path: the bundled stories260K model was not found above " + AppContext.BaseDirectory);
}

/// <summary>Shows load progress on one redrawn stderr line, on the loading thread (so in order), only on a terminal.</summary>
internal sealed class LoadProgressLine : IProgress<ModelLoadProgress>
{
    public void Report(ModelLoadProgress value)
    {
        if (Console.IsErrorRedirected) return;
        Console.Error.Write($"\rloading: {value.Stage} {value.Done}/{value.Total}".PadRight(40));
        if (value.Stage == ModelLoadStage.LoadingTokenizer && value.Done == value.Total) Console.Error.WriteLine();
    }
}
