using System.CommandLine;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using AgileQuant.Intrinsics;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant info</c>: the machine, its instruction sets and the kernels chosen.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var kernel = Commands.ModelOptions.KernelOption();
        var threads = new Option<int>("--threads") { Description = "Threads per matrix multiplication (0 = one per processor).", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object: os, architecture, processors, dotnet, instruction_sets, best, selected, threads, kernels." };
        var command = new Command("info", "Show the CPU's instruction sets and the kernels AgileQuant selects for each weight format.");
        command.Options.Add(kernel);
        command.Options.Add(threads);
        command.Options.Add(json);
        command.SetAction(parse => CliErrors.Run(parse, _ =>
        {
            if (parse.GetValue(json))
            {
                KernelSet chosen = KernelSelector.Create(ModelOptions.ReadKernelOptions(parse, kernel, threads));
                var fields = new Dictionary<string, object?>
                {
                    ["os"] = RuntimeInformation.OSDescription,
                    ["architecture"] = RuntimeInformation.ProcessArchitecture.ToString(),
                    ["processors"] = Environment.ProcessorCount,
                    ["dotnet"] = Environment.Version.ToString(),
                    ["instruction_sets"] = InstructionSets(),
                    ["best"] = KernelSelector.BestSupported.ToString(),
                    ["selected"] = chosen.Name,
                    ["threads"] = chosen.Threads,
                    ["kernels"] = chosen.Kernels.Select(k => k.Name).ToArray(),
                };
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(fields));
                return ExitCodes.Success;
            }
            PrintMachine();
            KernelSet set = KernelSelector.Create(ModelOptions.ReadKernelOptions(parse, kernel, threads));
            Console.WriteLine($"selected: {set.Name} ({set.Threads} threads)");
            foreach (IMatMulKernel k in set.Kernels) Console.WriteLine($"  {k.Name}");
            return ExitCodes.Success;
        }));
        return command;
    }

    internal static void PrintMachine()
    {
        Console.WriteLine($"machine: {RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture}, {Environment.ProcessorCount} processors, .NET {Environment.Version}");
        List<string> isa = InstructionSets();
        Console.WriteLine($"instruction sets: {(isa.Count == 0 ? "none (scalar only)" : string.Join(", ", isa))}; best kernel: {KernelSelector.BestSupported}");
    }

    private static List<string> InstructionSets()
    {
        var isa = new List<string>();
        if (Avx2.IsSupported) isa.Add("AVX2");
        if (Fma.IsSupported) isa.Add("FMA");
        if (AvxVnni.IsSupported) isa.Add("AVX-VNNI");
        if (Avx512F.IsSupported) isa.Add("AVX-512F");
        if (Avx512BW.IsSupported) isa.Add("AVX-512BW");
        if (AdvSimd.IsSupported) isa.Add("AdvSimd");
        if (Dp.IsSupported) isa.Add("SDOT");
        return isa;
    }
}
