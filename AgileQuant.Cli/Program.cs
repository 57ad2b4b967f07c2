namespace AgileQuant.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("agilequant: not yet implemented");
        return 1;
    }
}
