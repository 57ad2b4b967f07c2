using System.Text.Json;
using AgileQuant.Core.Generation;
using Microsoft.Extensions.AI;

namespace AgileQuant.Cli.Server;

/// <summary>
/// The generation settings of an OpenAI request, validated: <c>max_tokens</c> (or <c>max_completion_tokens</c>),
/// <c>temperature</c>, <c>top_p</c>, <c>top_k</c>, <c>min_p</c>, <c>frequency_penalty</c>, <c>presence_penalty</c>,
/// <c>repetition_penalty</c> (or <c>repeat_penalty</c>), <c>repeat_last_n</c>, <c>seed</c>, <c>stop</c>,
/// <c>stream</c>, <c>stream_options.include_usage</c>; <c>n</c> must be 1. Unset values come from the server's defaults.
/// </summary>
internal sealed record RequestSettings(SamplingOptions Sampling, int MaxTokens, string[] Stops, bool Stream, bool IncludeUsage)
{
    /// <summary>Most stop texts in one request (OpenAI's limit).</summary>
    public const int MaxStops = 4;

    public static RequestSettings Read(JsonElement request, GenerationOptions defaults, bool chat)
    {
        SamplingOptions d = defaults.Sampling;
        int? maxTokens = Int(request, "max_completion_tokens") ?? Int(request, "max_tokens");
        if (maxTokens is < 1) throw ApiException.BadRequest($"max_tokens must be at least 1, found {maxTokens}.", "max_tokens");
        if (Int(request, "n") is int n && n != 1) throw ApiException.BadRequest($"n must be 1 (one choice per request), found {n}.", "n");
        if (Bool(request, "logprobs") == true) throw ApiException.BadRequest("logprobs are not supported.", "logprobs");
        if (!chat && Bool(request, "echo") == true) throw ApiException.BadRequest("echo is not supported.", "echo");
        if (!chat && Int(request, "best_of") is int best && best != 1) throw ApiException.BadRequest($"best_of must be 1, found {best}.", "best_of");
        if (chat && request.TryGetProperty("tools", out JsonElement tools) && tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() > 0)
            throw ApiException.BadRequest("tools are not supported.", "tools");
        var sampling = new SamplingOptions
        {
            Temperature = Float(request, "temperature") ?? d.Temperature,
            TopP = Float(request, "top_p") ?? d.TopP,
            TopK = Int(request, "top_k") ?? d.TopK,
            MinP = Float(request, "min_p") ?? d.MinP,
            FrequencyPenalty = Float(request, "frequency_penalty") ?? d.FrequencyPenalty,
            PresencePenalty = Float(request, "presence_penalty") ?? d.PresencePenalty,
            RepetitionPenalty = Float(request, "repetition_penalty") ?? Float(request, "repeat_penalty") ?? d.RepetitionPenalty,
            PenaltyWindow = Int(request, "repeat_last_n") ?? d.PenaltyWindow,
            Seed = Long(request, "seed") is long seed ? SamplingOptions.FoldSeed(seed) : d.Seed,
        };
        if (sampling.Temperature > 2f) throw ApiException.BadRequest($"temperature must be in [0, 2], found {sampling.Temperature}.", "temperature");
        try
        {
            sampling.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            string param = e.ParamName switch
            {
                nameof(SamplingOptions.Temperature) => "temperature",
                nameof(SamplingOptions.TopP) => "top_p",
                nameof(SamplingOptions.TopK) => "top_k",
                nameof(SamplingOptions.MinP) => "min_p",
                nameof(SamplingOptions.FrequencyPenalty) => "frequency_penalty",
                nameof(SamplingOptions.PresencePenalty) => "presence_penalty",
                nameof(SamplingOptions.RepetitionPenalty) => "repetition_penalty",
                _ => "repeat_last_n",
            };
            throw ApiException.BadRequest($"{param}: {CliErrors.OneLine(e)}", param);
        }
        bool stream = Bool(request, "stream") ?? false;
        bool includeUsage = false;
        if (request.TryGetProperty("stream_options", out JsonElement streamOptions) && streamOptions.ValueKind != JsonValueKind.Null)
        {
            if (streamOptions.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("stream_options must be an object.", "stream_options");
            includeUsage = Bool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
        }
        return new RequestSettings(sampling, maxTokens ?? defaults.MaxTokens, [.. defaults.StopSequences, .. ReadStops(request)], stream, includeUsage);
    }

    /// <summary>The conversation of a chat request: <c>messages</c>, each with a <c>role</c> and text <c>content</c> (a string or text parts).</summary>
    public static List<ChatMessage> ReadMessages(JsonElement request)
    {
        if (!request.TryGetProperty("messages", out JsonElement messages)) throw ApiException.BadRequest("messages is required.", "messages");
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            throw ApiException.BadRequest("messages must be a non-empty array of {role, content} objects.", "messages");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"{where} must be an object with role and content.", where);
            string role = message.TryGetProperty("role", out JsonElement r) && r.ValueKind == JsonValueKind.String ? r.GetString()!
                : throw ApiException.BadRequest($"{where}.role must be a string: system, developer, user or assistant.", where + ".role");
            ChatRole chatRole = role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                _ => throw ApiException.BadRequest($"{where}.role \"{role}\" is not supported: system, developer, user or assistant.", where + ".role"),
            };
            list.Add(new ChatMessage(chatRole, Content(message, where, allowNull: chatRole == ChatRole.Assistant)));
        }
        return list;
    }

    /// <summary>The text of a completion request's <c>prompt</c>: a string, or an array of exactly one string.</summary>
    public static string ReadPrompt(JsonElement request)
    {
        if (!request.TryGetProperty("prompt", out JsonElement prompt)) throw ApiException.BadRequest("prompt is required.", "prompt");
        if (prompt.ValueKind == JsonValueKind.String) return prompt.GetString()!;
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String) return prompt[0].GetString()!;
        throw ApiException.BadRequest("prompt must be a string (or an array of one string; token arrays and batches are not supported).", "prompt");
    }

    /// <summary>The texts of an embeddings request's <c>input</c>: a string or an array of non-empty strings.</summary>
    public static string[] ReadEmbeddingInputs(JsonElement request, int maxInputs)
    {
        if (!request.TryGetProperty("input", out JsonElement input)) throw ApiException.BadRequest("input is required.", "input");
        string[] texts = input.ValueKind switch
        {
            JsonValueKind.String => [input.GetString()!],
            JsonValueKind.Array when input.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => input.EnumerateArray().Select(e => e.GetString()!).ToArray(),
            _ => throw ApiException.BadRequest("input must be a string or an array of strings (token arrays are not supported).", "input"),
        };
        if (texts.Length == 0) throw ApiException.BadRequest("input must hold at least one string.", "input");
        if (texts.Length > maxInputs) throw ApiException.BadRequest($"input holds {texts.Length} strings; this server takes at most {maxInputs} per request.", "input");
        if (texts.Any(t => t.Length == 0)) throw ApiException.BadRequest("input strings must not be empty.", "input");
        return texts;
    }

    /// <summary>True for <c>encoding_format: "base64"</c>, false for <c>"float"</c> or none.</summary>
    public static bool ReadEncodingFormat(JsonElement request)
    {
        if (!request.TryGetProperty("encoding_format", out JsonElement format) || format.ValueKind == JsonValueKind.Null) return false;
        return format.ValueKind == JsonValueKind.String && format.GetString() is "float" or "base64"
            ? format.GetString() == "base64"
            : throw ApiException.BadRequest("encoding_format must be \"float\" or \"base64\".", "encoding_format");
    }

    private static string Content(JsonElement message, string where, bool allowNull)
    {
        if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind == JsonValueKind.Null)
            return allowNull ? "" : throw ApiException.BadRequest($"{where}.content is required.", where + ".content");
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind == JsonValueKind.Array)
        {
            var text = new System.Text.StringBuilder();
            foreach (JsonElement part in content.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || type.GetString() != "text"
                    || !part.TryGetProperty("text", out JsonElement value) || value.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest($"{where}.content parts must be {{\"type\": \"text\", \"text\": ...}} (images and audio are not supported).", where + ".content");
                text.Append(value.GetString());
            }
            return text.ToString();
        }
        throw ApiException.BadRequest($"{where}.content must be a string or an array of text parts.", where + ".content");
    }

    private static string[] ReadStops(JsonElement request)
    {
        if (!request.TryGetProperty("stop", out JsonElement stop) || stop.ValueKind == JsonValueKind.Null) return [];
        string[] stops = stop.ValueKind switch
        {
            JsonValueKind.String => [stop.GetString()!],
            JsonValueKind.Array when stop.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => stop.EnumerateArray().Select(e => e.GetString()!).ToArray(),
            _ => throw ApiException.BadRequest("stop must be a string or an array of strings.", "stop"),
        };
        if (stops.Length > MaxStops) throw ApiException.BadRequest($"stop holds {stops.Length} texts; at most {MaxStops} are allowed.", "stop");
        if (stops.Any(s => s.Length == 0)) throw ApiException.BadRequest("stop texts must not be empty.", "stop");
        return stops;
    }

    private static float? Float(JsonElement request, string name)
    {
        if (!request.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double x) && double.IsFinite(x) && Math.Abs(x) <= float.MaxValue
            ? (float)x : throw ApiException.BadRequest($"{name} must be a number.", name);
    }

    private static long? Long(JsonElement request, string name)
    {
        if (!request.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long x) ? x : throw ApiException.BadRequest($"{name} must be an integer.", name);
    }

    private static int? Int(JsonElement request, string name)
    {
        if (!request.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int x) ? x : throw ApiException.BadRequest($"{name} must be an integer in the 32-bit range.", name);
    }

    private static bool? Bool(JsonElement request, string name, string? display = null)
    {
        if (!request.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : throw ApiException.BadRequest($"{display ?? name} must be true or false.", display ?? name);
    }
}
