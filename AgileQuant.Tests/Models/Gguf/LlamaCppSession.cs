using LLama;
using LLama.Common;
using LLama.Native;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>llama.cpp (through LLamaSharp, CPU backend) on one GGUF file: token ids in, logits out (last position, or every one).</summary>
internal sealed class LlamaCppSession : IDisposable
{
    private static readonly Lock LogLock = new();
    private static bool s_logConfigured;
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private int _position;

    /// <summary>Loads <paramref name="path"/>; <paramref name="kvCacheType"/>: the K and V cache type (llama.cpp's default, F16, when null).</summary>
    public LlamaCppSession(string path, int contextSize, int threads, GGMLType? kvCacheType = null)
    {
        ConfigureLogging();
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            GpuLayerCount = 0,
            Threads = threads,
            BatchThreads = threads,
        };
        if (kvCacheType is { } type)
        {
            parameters.TypeK = type;
            parameters.TypeV = type;
        }
        _weights = LLamaWeights.LoadFromFile(parameters);
        _context = _weights.CreateContext(parameters);
    }

    /// <summary>
    /// Keeps llama.cpp's load log out of the test output unless it errs. Call before anything that loads the native
    /// library (LLamaSharp refuses configuration once it has loaded).
    /// </summary>
    public static void ConfigureLogging()
    {
        lock (LogLock)
        {
            if (s_logConfigured) return;
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (level == LLamaLogLevel.Error) TestContext.Progress.Write("llama.cpp: " + message);
            });
            s_logConfigured = true;
        }
    }

    public int VocabSize => _context.Vocab.Count;

    /// <summary>Feeds <paramref name="tokens"/> after what was fed before; returns the logits of the last one.</summary>
    public float[] Forward(IReadOnlyList<int> tokens)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add(tokens[i], _position + i, LLamaSeqId.Zero, i == tokens.Count - 1);
        DecodeResult result = _context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
        _position += tokens.Count;
        return _context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }

    /// <summary>Feeds <paramref name="tokens"/> after what was fed before as one batch; returns the logits of each (tokens, vocab).</summary>
    public float[][] ForwardAll(IReadOnlyList<int> tokens)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add(tokens[i], _position + i, LLamaSeqId.Zero, true);
        DecodeResult result = _context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
        _position += tokens.Count;
        return Enumerable.Range(0, tokens.Count).Select(i => _context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <summary>Empties the KV cache.</summary>
    public void Reset()
    {
        _context.NativeHandle.MemoryClear(true);
        _position = 0;
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
