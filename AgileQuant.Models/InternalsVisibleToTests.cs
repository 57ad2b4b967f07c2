using System.Runtime.CompilerServices;

// The tests reach the format readers and writers with architecture descriptions of their own (e.g. a fused-QKV family).
[assembly: InternalsVisibleTo("AgileQuant.Tests")]
