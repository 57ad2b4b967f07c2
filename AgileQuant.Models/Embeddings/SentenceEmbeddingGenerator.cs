using Microsoft.Extensions.AI;

namespace AgileQuant.Models.Embeddings;

/// <summary>
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over a <see cref="SentenceEncoder"/>: each input string becomes
/// one L2-normalised, mean-pooled embedding (all-MiniLM-L6-v2: 384 floats; cosine similarity = dot product).
/// </summary>
public sealed class SentenceEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>Wraps <paramref name="encoder"/>; <paramref name="modelId"/> names it in metadata and results.</summary>
    public SentenceEmbeddingGenerator(SentenceEncoder encoder, string modelId = "all-MiniLM-L6-v2")
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        Encoder = encoder;
        Metadata = new EmbeddingGeneratorMetadata("agilequant", null, modelId, encoder.Dimensions);
    }

    /// <summary>The encoder.</summary>
    public SentenceEncoder Encoder { get; }

    /// <summary>Provider "agilequant", the model id and the embedding width.</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <summary>Embeds every value in order, on the calling thread; cancellation is checked between values.</summary>
    /// <exception cref="ArgumentException">Options ask for a width other than the model's.</exception>
    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (options?.Dimensions is int dims && dims != Encoder.Dimensions)
            throw new ArgumentException($"This model produces {Encoder.Dimensions}-dimensional embeddings, {dims} were requested.", nameof(options));
        var result = new GeneratedEmbeddings<Embedding<float>>();
        long tokens = 0;
        foreach (string value in values)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ArgumentNullException.ThrowIfNull(value, nameof(values));
            int[] ids = Encoder.Tokenize(value);
            tokens += ids.Length;
            result.Add(new Embedding<float>(Encoder.EmbedTokens(ids)) { ModelId = Metadata.DefaultModelId, CreatedAt = DateTimeOffset.UtcNow });
        }
        result.Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens };
        return Task.FromResult(result);
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(Encoder)) return Encoder;
        if (serviceType.IsInstanceOfType(Encoder.Model)) return Encoder.Model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the model outlives the generator.</summary>
    public void Dispose()
    {
    }
}
