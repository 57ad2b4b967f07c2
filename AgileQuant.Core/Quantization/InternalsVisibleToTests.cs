using System.Runtime.CompilerServices;

// Lets the tests check CholeskyFactorization against hand-computed factors.
[assembly: InternalsVisibleTo("AgileQuant.Tests")]

// Lets the in-process attention benchmark (kv-attention) build a KV cache and its attention directly.
[assembly: InternalsVisibleTo("AgileQuant.Benchmarks")]
