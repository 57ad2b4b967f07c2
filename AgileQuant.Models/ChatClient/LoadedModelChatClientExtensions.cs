using AgileQuant.Core;

namespace AgileQuant.Models.ChatClient;

/// <summary>Makes a <see cref="LoadedModel"/> usable through <c>Microsoft.Extensions.AI</c>.</summary>
public static class LoadedModelChatClientExtensions
{
    /// <summary>
    /// Wraps <paramref name="model"/> in an <see cref="AgileQuantChatClient"/>; the model id defaults to the
    /// checkpoint's file name (llama2.c) or folder name (Hugging Face), the end tokens to the model's own (<see cref="LoadedModel.EndTokenIds"/>).
    /// </summary>
    /// <remarks>The client does not own <paramref name="model"/>: dispose the model when done; the client's calls then throw <see cref="ObjectDisposedException"/>.</remarks>
    /// <exception cref="AgileQuantException">The model was loaded without a tokenizer.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="model"/> is disposed.</exception>
    public static AgileQuantChatClient AsChatClient(this LoadedModel model, AgileQuantChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Tokenizer is not Microsoft.ML.Tokenizers.Tokenizer tokenizer)
            throw new AgileQuantException($"The model '{model.SourcePath}' has no tokenizer; load it with ModelLoadOptions.TokenizerPath to chat with it.");
        options ??= new AgileQuantChatClientOptions();
        if (options.ModelId is null) options = options with { ModelId = DefaultModelId(model) };
        if (options.EndTokenIds is null) options = options with { EndTokenIds = model.EndTokenIds };
        return new AgileQuantChatClient(model, tokenizer, options);
    }

    private static string DefaultModelId(LoadedModel model)
    {
        string path = Path.TrimEndingDirectorySeparator(model.SourcePath);
        if (model.Format == "llama2c") return Path.GetFileNameWithoutExtension(path);
        string? folder = Directory.Exists(path) ? path : Path.GetDirectoryName(path);
        return folder is null ? AgileQuantChatClient.ProviderName : Path.GetFileName(folder);
    }
}
