using System.Net;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using AgileQuant.Models.Embeddings;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace AgileQuant.Cli.Server;

/// <summary>What <see cref="OpenAiServer"/> serves and its limits.</summary>
internal sealed record ServerSettings
{
    /// <summary>The generative model (chat and text completions), or null to serve embeddings only.</summary>
    public LoadedModel? Model { get; init; }

    /// <summary>Its id in <c>/v1/models</c> and responses.</summary>
    public string ModelId { get; init; } = "agilequant";

    /// <summary>The chat format of <c>/v1/chat/completions</c>; null: the one recognised in the model's own template.</summary>
    public ChatTemplate? ChatTemplate { get; init; }

    /// <summary>The sentence encoder behind <c>/v1/embeddings</c>, or null.</summary>
    public SentenceEncoder? Encoder { get; init; }

    /// <summary>The encoder's id.</summary>
    public string EncoderId { get; init; } = "embeddings";

    /// <summary>Address to listen on (an IP address, or <c>localhost</c> for the IPv4 loopback).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Port; 0 picks a free one (see <see cref="OpenAiServer.Addresses"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Generations and embedding batches run at once; more wait.</summary>
    public int Parallel { get; init; } = 4;

    /// <summary>Requests that may wait for a slot; beyond that they are answered 503.</summary>
    public int QueueLength { get; init; } = 64;

    /// <summary>Largest request body, in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>Most inputs in one embeddings request.</summary>
    public int MaxEmbeddingInputs { get; init; } = 256;

    /// <summary>Sampling, max tokens and stop texts for what a request leaves unset.</summary>
    public GenerationOptions Defaults { get; init; } = new() { Sampling = SamplingOptions.LlamaCppDefaults };
}

/// <summary>
/// An OpenAI-compatible HTTP server over one loaded model (ASP.NET Core, Kestrel): <c>/v1/chat/completions</c> and
/// <c>/v1/completions</c> (server-sent events with <c>"stream": true</c>), <c>/v1/embeddings</c>, <c>/v1/models</c>,
/// <c>/health</c>. Every request runs in its own context over the shared weights; at most
/// <see cref="ServerSettings.Parallel"/> at once, <see cref="ServerSettings.QueueLength"/> waiting. Bad requests are
/// answered with 4xx and an OpenAI error object, never by stopping the server.
/// </summary>
internal sealed class OpenAiServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OpenAiServer(WebApplication app, IReadOnlyList<Uri> addresses)
    {
        _app = app;
        Addresses = addresses;
    }

    /// <summary>Where the server listens (the actual port when 0 was asked for).</summary>
    public IReadOnlyList<Uri> Addresses { get; }

    /// <summary>Starts listening; returns once the port is bound.</summary>
    public static async Task<OpenAiServer> StartAsync(ServerSettings settings, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        IPAddress address = settings.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(settings.Host, out IPAddress? parsed) ? parsed
            : throw new InvalidOptionException($"--host must be an IP address or localhost, found {settings.Host}.");
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = settings.MaxBodyBytes;
            kestrel.Listen(address, settings.Port);
        });
        WebApplication app = builder.Build();
        var endpoints = new OpenAiEndpoints(settings);
        endpoints.Map(app);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        Uri[] addresses = app.Urls.Select(u => new Uri(u)).ToArray();
        return new OpenAiServer(app, addresses);
    }

    /// <summary>Completes when the server stops (<paramref name="cancellationToken"/> stops it).</summary>
    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Stops the server.</summary>
    public async ValueTask DisposeAsync() => await _app.DisposeAsync().ConfigureAwait(false);
}

/// <summary>An error answered as <c>{"error": {"message", "type", "param", "code"}}</c> with an HTTP status.</summary>
internal sealed class ApiException(int status, string message, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    /// <summary>OpenAI's error type for the status.</summary>
    public string Type => Status switch
    {
        StatusCodes.Status404NotFound => "not_found_error",
        StatusCodes.Status413PayloadTooLarge or StatusCodes.Status400BadRequest or StatusCodes.Status405MethodNotAllowed or StatusCodes.Status415UnsupportedMediaType => "invalid_request_error",
        StatusCodes.Status503ServiceUnavailable or StatusCodes.Status429TooManyRequests => "server_busy",
        _ => "server_error",
    };

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(StatusCodes.Status400BadRequest, message, param, code);
}
