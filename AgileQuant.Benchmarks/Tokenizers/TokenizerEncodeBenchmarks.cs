using AgileQuant.Models.Tokenizers;
using BenchmarkDotNet.Attributes;
using Microsoft.ML.Tokenizers;

namespace AgileQuant.Benchmarks.Tokenizers;

/// <summary>
/// Encoding the whole WikiText-2 test split (1.29 MB, one string) with each kind of tokenizer: byte-level BPE with
/// its pre-tokenizer (llama-bpe with ignore_merges, qwen2, deepseek-llm's six regexes, gpt-2), SentencePiece
/// (llama-spm), WordPiece (bert-bge), from the ggml-vocab GGUFs in ../shared/assets/tokenizers (shared/ beside the
/// repository root). <c>dotnet run -c Release --project AgileQuant.Benchmarks -- --filter *TokenizerEncode*</c>.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class TokenizerEncodeBenchmarks
{
    private Tokenizer _tokenizer = null!;
    private string _text = null!;

    /// <summary>The ggml-vocab file (ggml-vocab-NAME.gguf).</summary>
    [Params("llama-bpe", "qwen2", "deepseek-llm", "gpt-2", "llama-spm", "bert-bge")]
    public string Vocabulary { get; set; } = "llama-bpe";

    [GlobalSetup]
    public void Setup()
    {
        string shared = SharedAssets();
        _tokenizer = GgufTokenizerLoader.Load(Path.Combine(shared, "tokenizers", "ggml-vocab", $"ggml-vocab-{Vocabulary}.gguf"), addBos: false);
        _text = File.ReadAllText(Path.Combine(shared, "text", "wikitext2", "wiki.test.raw"));
    }

    /// <summary>../shared/assets beside the repository (the directory holding AgileQuant.sln) above this binary.</summary>
    private static string SharedAssets()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "AgileQuant.sln")))
                return Path.Combine(dir.Parent?.FullName ?? dir.FullName, "shared", "assets");
        throw new DirectoryNotFoundException("expected AgileQuant.sln in a directory above " + AppContext.BaseDirectory + ", found none");
    }

    /// <summary>Token ids of the whole text.</summary>
    [Benchmark]
    public int EncodeWikiText2() => _tokenizer.EncodeToIds(_text).Count;
}
