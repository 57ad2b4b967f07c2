using System.Runtime.CompilerServices;

// The benchmark tooling of `agilequant bench e2e` (Bench/: synthetic GGUF models, scheme loading) is shared with the
// BenchmarkDotNet suites and tested; it is tool code, not part of the library packages.
[assembly: InternalsVisibleTo("AgileQuant.Tests")]
[assembly: InternalsVisibleTo("AgileQuant.Benchmarks")]
