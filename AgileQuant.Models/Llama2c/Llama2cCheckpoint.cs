using System.Runtime.InteropServices;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Llama2c;

/// <summary>
/// Reader for llama2.c checkpoints ("version 0" <c>.bin</c>): a 7-int32 header (dim, hidden_dim, n_layers,
/// n_heads, n_kv_heads, vocab_size — negative when a separate classifier is stored —, seq_len) followed by
/// float32 tensors in a fixed order. Layout as written by karpathy/llama2.c <c>export.py</c> (legacy_export)
/// and read by <c>run.c</c> <c>memory_map_weights</c>.
/// </summary>
public static class Llama2cCheckpoint
{
    private const int HeaderBytes = 7 * sizeof(int);

    /// <summary>Reads the header of <paramref name="path"/> and returns the architecture it describes.</summary>
    public static TransformerConfig ReadConfig(string path) => ReadHeader(path, out _, out _);

    /// <summary>Loads the checkpoint at <paramref name="path"/> as FP32 weights, validating the header and the exact file size.</summary>
    /// <param name="path">The <c>.bin</c> file.</param>
    /// <param name="progress">Receives <see cref="ModelLoadStage.ReadingWeights"/> after each tensor (per layer) read.</param>
    /// <param name="cancellationToken">Checked before each tensor read.</param>
    public static TransformerWeights Load(string path, IProgress<ModelLoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        TransformerConfig config = ReadHeader(path, out bool sharedClassifier, out long fileLength);
        int dim = config.HiddenSize, hidden = config.IntermediateSize, layers = config.NumLayers;
        int kvDim = config.KvDim, vocab = config.VocabSize, headSize = config.HeadDim, seq = config.MaxSequenceLength;
        int tensorsRead = 0, tensorsTotal = 2 + 9 * layers + (sharedClassifier ? 0 : 1);

        using FileStream stream = GuardedFile.OpenRead(path, bufferSize: 1 << 16);
        stream.Position = HeaderBytes;
        float[] Read(string tensor, long count)
        {
            if (stream.Position + count * sizeof(float) > fileLength)
                throw new ModelFormatException(path, tensor, $"needs {count * sizeof(float)} bytes at offset {stream.Position}, but the file ends at {fileLength} (truncated)");
            cancellationToken.ThrowIfCancellationRequested();
            float[] data = new float[count];
            try { stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan())); }
            catch (EndOfStreamException e)
            {
                throw new ModelFormatException(path, tensor, $"the file ended before {count * sizeof(float)} bytes at offset {stream.Position} (truncated while loading)", e);
            }
            progress?.Report(new ModelLoadProgress(ModelLoadStage.ReadingWeights, ++tensorsRead, tensorsTotal));
            return data;
        }
        // One array per layer: all layers of a tensor together may exceed 2^31 elements (e.g. w1 of a 13B model).
        float[][] ReadPerLayer(string tensor, long perLayer)
        {
            if (stream.Position + perLayer * layers * sizeof(float) > fileLength)
                throw new ModelFormatException(path, tensor, $"needs {perLayer * layers * sizeof(float)} bytes at offset {stream.Position}, but the file ends at {fileLength} (truncated)");
            var result = new float[layers][];
            for (int l = 0; l < layers; l++) result[l] = Read(tensor, perLayer);
            return result;
        }

        float[] tokenEmbedding = Read("token_embedding_table", (long)vocab * dim); // (vocab, dim)
        float[][] rmsAttention = ReadPerLayer("rms_att_weight", dim);                // (layer, dim)
        float[][] wq = ReadPerLayer("wq", (long)dim * dim);                         // (layer, dim, dim)
        float[][] wk = ReadPerLayer("wk", (long)kvDim * dim);                       // (layer, kv_dim, dim)
        float[][] wv = ReadPerLayer("wv", (long)kvDim * dim);                       // (layer, kv_dim, dim)
        float[][] wo = ReadPerLayer("wo", (long)dim * dim);                         // (layer, dim, dim)
        float[][] rmsFfn = ReadPerLayer("rms_ffn_weight", dim);                     // (layer, dim)
        float[][] w1 = ReadPerLayer("w1", (long)hidden * dim);                      // (layer, hidden, dim)
        float[][] w2 = ReadPerLayer("w2", (long)dim * hidden);                      // (layer, dim, hidden)
        float[][] w3 = ReadPerLayer("w3", (long)hidden * dim);                      // (layer, hidden, dim)
        float[] rmsFinal = Read("rms_final_weight", dim);                           // (dim,)
        long freqBytes = 2L * seq * (headSize / 2) * sizeof(float);                  // freq_cis_real/imag (seq, hs/2), unused
        if (stream.Position + freqBytes > fileLength)
            throw new ModelFormatException(path, "freq_cis_real", $"needs {freqBytes} bytes at offset {stream.Position}, but the file ends at {fileLength} (truncated)");
        stream.Position += freqBytes;
        float[] classifier = sharedClassifier ? tokenEmbedding : Read("wcls", (long)vocab * dim); // (vocab, dim)
        if (stream.Position != fileLength)
            throw new ModelFormatException(path, null, $"expected the file to end at byte {stream.Position} after the last tensor, but it is {fileLength} bytes long (trailing data or wrong header)");

        var layerWeights = new LayerWeights[layers];
        for (int l = 0; l < layers; l++)
        {
            layerWeights[l] = new LayerWeights
            {
                AttentionNorm = new NormLayer(NormKind.RmsNorm, rmsAttention[l], null, config.NormEpsilon),
                Query = new LinearLayer(new Fp32Matrix(wq[l], dim, dim)),
                Key = new LinearLayer(new Fp32Matrix(wk[l], kvDim, dim)),
                Value = new LinearLayer(new Fp32Matrix(wv[l], kvDim, dim)),
                Output = new LinearLayer(new Fp32Matrix(wo[l], dim, dim)),
                MlpNorm = new NormLayer(NormKind.RmsNorm, rmsFfn[l], null, config.NormEpsilon),
                Gate = new LinearLayer(new Fp32Matrix(w1[l], hidden, dim)),
                Up = new LinearLayer(new Fp32Matrix(w3[l], hidden, dim)),
                Down = new LinearLayer(new Fp32Matrix(w2[l], dim, hidden)),
            };
        }
        var weights = new TransformerWeights
        {
            Config = config,
            TokenEmbedding = tokenEmbedding,
            Layers = layerWeights,
            FinalNorm = new NormLayer(NormKind.RmsNorm, rmsFinal, null, config.NormEpsilon),
            LmHead = new LinearLayer(new Fp32Matrix(classifier, vocab, dim)),
        };
        weights.Validate();
        return weights;
    }

    private static TransformerConfig ReadHeader(string path, out bool sharedClassifier, out long fileLength)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "file not found");
        Span<int> h = stackalloc int[7];
        using (FileStream stream = GuardedFile.OpenRead(path))
        {
            fileLength = stream.Length;
            if (fileLength < HeaderBytes)
                throw new ModelFormatException(path, null, $"expected at least a {HeaderBytes}-byte llama2.c header, found a {fileLength}-byte file");
            stream.ReadExactly(MemoryMarshal.AsBytes(h));
        }
        string[] names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        for (int i = 0; i < 7; i++)
            if (i != 5 && h[i] <= 0) throw new ModelFormatException(path, null, $"header field {names[i]} must be positive, found {h[i]}");
        if (h[5] == 0 || h[5] == int.MinValue) throw new ModelFormatException(path, null, $"header field vocab_size must be non-zero, found {h[5]}");
        int dim = h[0], heads = h[3], kvHeads = h[4];
        if (dim % heads != 0) throw new ModelFormatException(path, null, $"dim {dim} is not a multiple of n_heads {heads}");
        if (kvHeads > heads || heads % kvHeads != 0) throw new ModelFormatException(path, null, $"n_heads {heads} is not a multiple of n_kv_heads {kvHeads}");
        if ((dim / heads) % 2 != 0) throw new ModelFormatException(path, null, $"head size {dim / heads} must be even for rotary embeddings");
        sharedClassifier = h[5] > 0;
        int vocab = Math.Abs(h[5]);
        // Exact size check before any allocation: the header must describe this file, not a bigger one.
        // In 128-bit arithmetic: int32 fields make products up to ~2^95, and a 64-bit sum that wraps around could match the file length.
        Int128 kvDim = (Int128)dim / heads * kvHeads, hidden = h[1], layers = h[2], headSize = dim / heads;
        Int128 floats = (Int128)vocab * dim + layers * (2 * (Int128)dim + 2 * (Int128)dim * dim + 2 * kvDim * dim + 3 * hidden * dim)
            + dim + 2 * (Int128)h[6] * (headSize / 2) + (sharedClassifier ? 0 : (Int128)vocab * dim);
        Int128 expected = HeaderBytes + floats * sizeof(float);
        if (expected != fileLength)
            throw new ModelFormatException(path, null, $"the header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv heads {kvHeads}, vocab {vocab}, seq {h[6]}, {(sharedClassifier ? "shared" : "separate")} classifier) describes a {expected}-byte file, but the file has {fileLength} bytes{(fileLength < expected ? " (truncated)" : "")}");
        if ((long)vocab * dim > Array.MaxLength || (long)h[1] * dim > Array.MaxLength || (long)dim * dim > Array.MaxLength)
            throw new ModelFormatException(path, null, $"a single tensor exceeds {Array.MaxLength} elements (the largest .NET array), which this reader does not support");
        var config = new TransformerConfig
        {
            Family = "llama",
            VocabSize = vocab,
            HiddenSize = dim,
            IntermediateSize = h[1],
            NumLayers = h[2],
            NumHeads = heads,
            NumKvHeads = kvHeads,
            MaxSequenceLength = h[6],
            Norm = NormKind.RmsNorm,
            NormEpsilon = 1e-5f,
            Positions = PositionKind.Rotary,
            RotaryPairing = RotaryPairing.Adjacent,
            RotaryTheta = 10000f,
            Mlp = MlpKind.SwiGlu,
            BosTokenId = 1,
            EosTokenId = 2,
        };
        ConfigValueChecks.Require(path, config, new ConfigKeys("the norm epsilon", "the RoPE base", "header field seq_len", "the position offset"));
        return config;
    }
}
