using System.Runtime.CompilerServices;

// Tests reach the worker pool and micro-kernel internals directly.
[assembly: InternalsVisibleTo("AgileQuant.Tests")]
[assembly: InternalsVisibleTo("AgileQuant.Benchmarks")]
