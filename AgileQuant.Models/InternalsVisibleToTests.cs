using System.Runtime.CompilerServices;

// The tests reach the format readers and writers with architecture descriptions of their own (e.g. a fused-QKV family).
[assembly: InternalsVisibleTo("AgileQuant.Tests")]

// The tool (assembly agilequant) reads its own input files (text corpora, prompts) through the readers' one guarded path (GuardedFile).
[assembly: InternalsVisibleTo("agilequant")]
