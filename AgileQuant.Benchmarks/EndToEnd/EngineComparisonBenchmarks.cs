using AgileQuant.Cli.Bench;
using BenchmarkDotNet.Attributes;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// BenchmarkDotNet view of the end-to-end comparison: every engine configuration of <see cref="EngineConfig.All"/> on
/// the same synthetic GGUF files (shape from the environment variable <c>AGILEQUANT_E2E_SHAPE</c>, default
/// <c>llama7b-4l</c>), 2 threads; prefill of 128 and 512 tokens and 64 decode steps. Load time and memory are in the
/// <c>e2e-table</c> run (<see cref="EndToEndTable"/>), which also alternates the engines.
/// </summary>
[MemoryDiagnoser]
public class EngineComparisonBenchmarks
{
    private IEndToEndEngine _engine = null!;
    private int[] _prompt128 = null!;
    private int[] _prompt512 = null!;

    /// <summary>Engine configuration name (see <see cref="EngineConfig.All"/>).</summary>
    [ParamsSource(nameof(Engines))]
    public string Engine { get; set; } = "AgileQuant FP32";

    /// <summary>Every configuration name.</summary>
    public static IEnumerable<string> Engines => EngineConfig.All(0.5).Select(e => e.Name);

    /// <summary>Threads per engine.</summary>
    [Params(2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        SyntheticModelShape shape = SyntheticModelShape.Parse(Environment.GetEnvironmentVariable("AGILEQUANT_E2E_SHAPE") ?? "llama7b-4l");
        EngineConfig config = EngineConfig.All(0.5).First(e => e.Name == Engine);
        string directory = Path.Combine(Path.GetTempPath(), "agilequant-e2e");
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"{shape.Name}-{config.FileType}.gguf");
        if (!File.Exists(path)) SyntheticGgufModel.Write(path, shape, config.FileType);
        _engine = config.Load(path, Threads, 512);
        var random = new Random(11);
        _prompt512 = Enumerable.Range(0, 512).Select(i => i == 0 ? 1 : random.Next(3, shape.Config.VocabSize)).ToArray();
        _prompt128 = _prompt512[..128];
    }

    [GlobalCleanup]
    public void Cleanup() => _engine.Dispose();

    [Benchmark(Description = "prefill 128 tokens")]
    public float Prefill128() => _engine.Prefill(_prompt128);

    [Benchmark(Description = "prefill 512 tokens")]
    public float Prefill512() => _engine.Prefill(_prompt512);

    [Benchmark(Description = "decode 64 tokens")]
    public TimeSpan Decode64() => _engine.Decode(1, 64);
}
