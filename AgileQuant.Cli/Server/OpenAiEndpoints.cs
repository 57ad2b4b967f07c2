using System.Buffers;
using System.Text.Json;
using AgileQuant.Core.Generation;
using AgileQuant.Models.ChatClient;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Cli.Server;

/// <summary>The routes of <see cref="OpenAiServer"/> and their handlers (request JSON in, OpenAI's response shapes out).</summary>
internal sealed class OpenAiEndpoints
{
    private readonly ServerSettings _settings;
    private readonly AgileQuantChatClient? _chat;       // formats conversations with the model's template
    private readonly TextGenerator? _generator;
    private readonly SemaphoreSlim _slots;
    private readonly object _encoderLock = new();       // the sentence encoder runs one input at a time
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _waiting;

    public OpenAiEndpoints(ServerSettings settings)
    {
        _settings = settings;
        if (settings.Model is { } model)
        {
            _chat = model.AsChatClient(new AgileQuantChatClientOptions { ModelId = settings.ModelId, Template = settings.ChatTemplate });
            _generator = new TextGenerator(model.Model, _chat.Tokenizer);
        }
        _slots = new SemaphoreSlim(settings.Parallel, settings.Parallel);
    }

    /// <summary>Maps every route (any method, so that a wrong one gets a JSON 405) and a JSON 404 for the rest.</summary>
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map("/health", context => Handle(context, "GET", _ => WriteJson(context, 200, w => { w.WriteStartObject(); w.WriteString("status", "ok"); w.WriteEndObject(); })));
        app.Map("/v1/models", context => Handle(context, "GET", _ => WriteJson(context, 200, WriteModels)));
        app.Map("/v1/chat/completions", context => Handle(context, "POST", request => Complete(context, request, chat: true)));
        app.Map("/v1/completions", context => Handle(context, "POST", request => Complete(context, request, chat: false)));
        app.Map("/v1/embeddings", context => Handle(context, "POST", request => Embed(context, request)));
        app.MapFallback(context => WriteError(context, new ApiException(StatusCodes.Status404NotFound, $"No route {context.Request.Method} {context.Request.Path}: this server has /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and /health.")));
    }

    /// <summary>Checks the method, reads the JSON body of a POST, runs the handler, and turns every failure into a JSON error.</summary>
    private async Task Handle(HttpContext context, string method, Func<JsonElement, Task> handler)
    {
        try
        {
            if (!HttpMethods.Equals(context.Request.Method, method))
                throw new ApiException(StatusCodes.Status405MethodNotAllowed, $"{context.Request.Path} takes {method}, not {context.Request.Method}.");
            if (method == "GET")
            {
                await handler(default).ConfigureAwait(false);
                return;
            }
            using JsonDocument body = await ReadBody(context).ConfigureAwait(false);
            await handler(body.RootElement).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nothing to answer.
        }
        catch (ApiException e)
        {
            await WriteError(context, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            await WriteError(context, new ApiException(e.StatusCode, e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? $"The request body is larger than this server's limit of {_settings.MaxBodyBytes} bytes." : e.Message)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AgileQuant.Core.AgileQuantException or ArgumentException)
        {
            await WriteError(context, ApiException.BadRequest(CliErrors.OneLine(e))).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await WriteError(context, new ApiException(StatusCodes.Status500InternalServerError, "internal error: " + CliErrors.OneLine(e))).ConfigureAwait(false);
        }
    }

    /// <summary>The request body as a JSON object, within the size limit.</summary>
    private async Task<JsonDocument> ReadBody(HttpContext context)
    {
        long limit = _settings.MaxBodyBytes;
        if (context.Request.ContentLength > limit)
            throw new ApiException(StatusCodes.Status413PayloadTooLarge, $"The request body has {context.Request.ContentLength} bytes; this server's limit is {limit}.");
        var buffer = new ArrayBufferWriter<byte>();
        while (true)
        {
            Memory<byte> chunk = buffer.GetMemory(16384);
            int read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted).ConfigureAwait(false);
            if (read == 0) break;
            buffer.Advance(read);
            if (buffer.WrittenCount > limit)
                throw new ApiException(StatusCodes.Status413PayloadTooLarge, $"The request body is larger than this server's limit of {limit} bytes.");
        }
        if (buffer.WrittenCount == 0) throw ApiException.BadRequest("The request body is empty; expected a JSON object.");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(buffer.WrittenMemory, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"The request body is not valid JSON: {e.Message}");
        }
        JsonValueKind kind = document.RootElement.ValueKind;
        if (kind != JsonValueKind.Object)
        {
            document.Dispose();
            throw ApiException.BadRequest($"Expected a JSON object as the request body, found {kind}.");
        }
        return document;
    }

    /// <summary><c>/v1/chat/completions</c> and <c>/v1/completions</c>: one generation, whole or streamed.</summary>
    private async Task Complete(HttpContext context, JsonElement request, bool chat)
    {
        if (_chat is null || _generator is null)
            throw new ApiException(StatusCodes.Status404NotFound, "This server has no generative model (it was started with --embedding-model only).", "model", "model_not_found");
        RequestSettings settings = RequestSettings.Read(request, _settings.Defaults, chat);
        IReadOnlyList<int> prompt;
        string[] stops;
        if (chat)
        {
            prompt = _chat.EncodePrompt(RequestSettings.ReadMessages(request));
            stops = [.. _chat.Template.StopSequences, .. settings.Stops];
        }
        else
        {
            prompt = _chat.Tokenizer.EncodeToIds(RequestSettings.ReadPrompt(request));
            stops = settings.Stops;
        }
        int contextLength = _chat.Model.Config.MaxSequenceLength;
        if (prompt.Count >= contextLength)
            throw ApiException.BadRequest($"This model's maximum context length is {contextLength} tokens, but the prompt has {prompt.Count} tokens.", chat ? "messages" : "prompt", "context_length_exceeded");
        if (settings.MaxTokens > contextLength)
            throw ApiException.BadRequest($"max_tokens is {settings.MaxTokens}, more than this model's context of {contextLength} tokens.", "max_tokens");
        var options = new GenerationOptions
        {
            Sampling = settings.Sampling,
            MaxTokens = settings.MaxTokens,
            StopSequences = stops,
            EndTokenIds = _settings.Model!.EndTokenIds,
        };
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        await using var slot = await EnterSlot(context).ConfigureAwait(false);
        CancellationToken aborted = context.RequestAborted;
        if (settings.Stream)
        {
            await Stream(context, id, created, chat, prompt, options, settings.IncludeUsage).ConfigureAwait(false);
            return;
        }
        var text = new System.Text.StringBuilder();
        int generated = 0;
        FinishReason finish = FinishReason.MaxTokens;
        await foreach (GenerationUpdate update in _generator.GenerateAsync(prompt, options, aborted).ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.TokenId >= 0) generated++;
            if (update.Finish is FinishReason f) finish = f;
        }
        await WriteJson(context, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", _settings.ModelId);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (chat)
            {
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                w.WriteString("content", text.ToString());
                w.WriteEndObject();
            }
            else w.WriteString("text", text.ToString());
            w.WriteNull("logprobs");
            w.WriteString("finish_reason", OpenAiFinish(finish));
            w.WriteEndObject();
            w.WriteEndArray();
            WriteUsage(w, prompt.Count, generated);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>Server-sent events: a chunk per text piece, a last chunk with the finish reason, usage when asked, then <c>[DONE]</c>.</summary>
    private async Task Stream(HttpContext context, string id, long created, bool chat, IReadOnlyList<int> prompt, GenerationOptions options, bool includeUsage)
    {
        HttpResponse response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        int generated = 0;
        bool first = true;
        try
        {
            await foreach (GenerationUpdate update in _generator!.GenerateAsync(prompt, options, context.RequestAborted).ConfigureAwait(false))
            {
                if (update.TokenId >= 0) generated++;
                string? finish = update.Finish is FinishReason f ? OpenAiFinish(f) : null;
                if (update.Text.Length > 0 || first)
                {
                    await WriteEvent(response, w => WriteChunk(w, id, created, chat, update.Text, first, null)).ConfigureAwait(false);
                    first = false;
                }
                if (finish is not null) await WriteEvent(response, w => WriteChunk(w, id, created, chat, null, false, finish)).ConfigureAwait(false);
            }
            if (includeUsage)
                await WriteEvent(response, w =>
                {
                    WriteChunkHead(w, id, created, chat);
                    w.WriteStartArray("choices");
                    w.WriteEndArray();
                    WriteUsage(w, prompt.Count, generated);
                    w.WriteEndObject();
                }).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Headers are sent: the error goes into the stream, which then ends.
            var error = e as ApiException ?? new ApiException(StatusCodes.Status500InternalServerError, CliErrors.OneLine(e));
            await WriteEvent(response, w => WriteErrorObject(w, error)).ConfigureAwait(false);
        }
        await response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
        await response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private void WriteChunkHead(Utf8JsonWriter w, string id, long created, bool chat)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
        w.WriteNumber("created", created);
        w.WriteString("model", _settings.ModelId);
    }

    private void WriteChunk(Utf8JsonWriter w, string id, long created, bool chat, string? text, bool first, string? finish)
    {
        WriteChunkHead(w, id, created, chat);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (chat)
        {
            w.WriteStartObject("delta");
            if (first) w.WriteString("role", "assistant");
            if (text is not null) w.WriteString("content", text);
            w.WriteEndObject();
        }
        else w.WriteString("text", text ?? "");
        w.WriteNull("logprobs");
        if (finish is null) w.WriteNull("finish_reason");
        else w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary><c>/v1/embeddings</c>: float arrays or base64 (little-endian float32), as the OpenAI SDKs ask.</summary>
    private async Task Embed(HttpContext context, JsonElement request)
    {
        if (_settings.Encoder is not { } encoder)
            throw new ApiException(StatusCodes.Status404NotFound, "This server has no embedding model: start it with --embedding-model PATH.", "model", "model_not_found");
        string[] inputs = RequestSettings.ReadEmbeddingInputs(request, _settings.MaxEmbeddingInputs);
        bool base64 = RequestSettings.ReadEncodingFormat(request);
        if (request.TryGetProperty("dimensions", out JsonElement dims) && dims.ValueKind != JsonValueKind.Null
            && !(dims.ValueKind == JsonValueKind.Number && dims.TryGetInt32(out int d) && d == encoder.Dimensions))
            throw ApiException.BadRequest($"dimensions: this model's embeddings have {encoder.Dimensions} dimensions and cannot be shortened.", "dimensions");
        await using var slot = await EnterSlot(context).ConfigureAwait(false);
        var vectors = new float[inputs.Length][];
        int tokens = 0;
        await Task.Run(() =>
        {
            lock (_encoderLock)
                for (int i = 0; i < inputs.Length; i++)
                {
                    context.RequestAborted.ThrowIfCancellationRequested();
                    int[] ids = encoder.Tokenize(inputs[i]);
                    tokens += ids.Length;
                    vectors[i] = encoder.EmbedTokens(ids);
                }
        }, context.RequestAborted).ConfigureAwait(false);
        await WriteJson(context, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (int i = 0; i < vectors.Length; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                if (base64) w.WriteBase64String("embedding", System.Runtime.InteropServices.MemoryMarshal.AsBytes(vectors[i].AsSpan()));
                else
                {
                    w.WriteStartArray("embedding");
                    foreach (float x in vectors[i]) w.WriteNumberValue(x);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("model", _settings.EncoderId);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", tokens);
            w.WriteNumber("total_tokens", tokens);
            w.WriteEndObject();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private void WriteModels(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        foreach (string id in new[] { _settings.Model is null ? null : _settings.ModelId, _settings.Encoder is null ? null : _settings.EncoderId }.OfType<string>())
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "model");
            w.WriteNumber("created", _created);
            w.WriteString("owned_by", "agilequant");
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Waits for a free slot (503 when <see cref="ServerSettings.QueueLength"/> requests already wait); dispose to release it.</summary>
    private async Task<SlotLease> EnterSlot(HttpContext context)
    {
        if (Interlocked.Increment(ref _waiting) > _settings.QueueLength + _settings.Parallel)
        {
            Interlocked.Decrement(ref _waiting);
            context.Response.Headers.RetryAfter = "1";
            throw new ApiException(StatusCodes.Status503ServiceUnavailable, $"The server is busy: {_settings.Parallel} requests running and {_settings.QueueLength} waiting; retry later.");
        }
        try
        {
            await _slots.WaitAsync(context.RequestAborted).ConfigureAwait(false);
        }
        catch
        {
            Interlocked.Decrement(ref _waiting);
            throw;
        }
        return new SlotLease(this);
    }

    private sealed class SlotLease(OpenAiEndpoints owner) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            owner._slots.Release();
            Interlocked.Decrement(ref owner._waiting);
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>OpenAI's finish reasons: <c>stop</c> (an end token or stop text) or <c>length</c> (max tokens or a full context).</summary>
    private static string OpenAiFinish(FinishReason finish) => finish is FinishReason.EndOfSequence or FinishReason.StopSequence ? "stop" : "length";

    private static void WriteUsage(Utf8JsonWriter w, int prompt, int completion)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", prompt);
        w.WriteNumber("completion_tokens", completion);
        w.WriteNumber("total_tokens", prompt + completion);
        w.WriteEndObject();
    }

    private static async Task WriteJson(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer)) write(writer);
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted).ConfigureAwait(false);
    }

    private static async Task WriteEvent(HttpResponse response, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        buffer.Write("data: "u8);
        using (var writer = new Utf8JsonWriter(buffer)) write(writer);
        buffer.Write("\n\n"u8);
        await response.Body.WriteAsync(buffer.WrittenMemory, response.HttpContext.RequestAborted).ConfigureAwait(false);
        await response.Body.FlushAsync(response.HttpContext.RequestAborted).ConfigureAwait(false);
    }

    private static Task WriteError(HttpContext context, ApiException error)
    {
        if (context.Response.HasStarted) return Task.CompletedTask;
        return WriteJson(context, error.Status, w => WriteErrorObject(w, error));
    }

    private static void WriteErrorObject(Utf8JsonWriter w, ApiException error)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", error.Message);
        w.WriteString("type", error.Type);
        if (error.Param is null) w.WriteNull("param");
        else w.WriteString("param", error.Param);
        if (error.Code is null) w.WriteNull("code");
        else w.WriteString("code", error.Code);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
