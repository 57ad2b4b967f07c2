using System.Runtime.CompilerServices;

// Lets the tests check CholeskyFactorization against hand-computed factors.
[assembly: InternalsVisibleTo("AgileQuant.Tests")]
