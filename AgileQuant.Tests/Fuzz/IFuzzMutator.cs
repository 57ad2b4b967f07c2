namespace AgileQuant.Tests.Fuzz;

/// <summary>Turns one input into a mutated copy; must be deterministic for a given <see cref="Random"/> state.</summary>
public interface IFuzzMutator
{
    /// <summary>Short name shown in reports.</summary>
    string Name { get; }

    /// <summary>A mutated copy of <paramref name="input"/> (never modifies it).</summary>
    byte[] Mutate(byte[] input, Random random);
}
