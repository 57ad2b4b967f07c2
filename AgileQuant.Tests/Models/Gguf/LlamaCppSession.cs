using LLama;
using LLama.Common;
using LLama.Native;

namespace AgileQuant.Tests.Models.Gguf;

/// <summary>llama.cpp (through LLamaSharp, CPU backend) on one GGUF file: token ids in, last-position logits out.</summary>
internal sealed class LlamaCppSession : IDisposable
{
    private static readonly Lock LogLock = new();
    private static bool s_logConfigured;
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private int _position;

    public LlamaCppSession(string path, int contextSize, int threads)
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
        _weights = LLamaWeights.LoadFromFile(parameters);
        _context = _weights.CreateContext(parameters);
    }

    /// <summary>Before the native library loads: keeps llama.cpp's load log out of the test output unless it errs (every user of llama.cpp calls this first).</summary>
    internal static void ConfigureLogging()
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
