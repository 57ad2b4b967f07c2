using System.CommandLine;
using AgileQuant.Intrinsics;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant selftest</c>: every SIMD kernel this CPU supports against its scalar twin.</summary>
internal static class SelfTestCommand
{
    public static Command Create()
    {
        var threads = new Option<int>("--threads") { Description = "Threads per kernel call.", DefaultValueFactory = _ => 2 };
        var seed = new Option<int>("--seed") { Description = "Seed of the test data.", DefaultValueFactory = _ => 1234 };
        var command = new Command("selftest", "Check every SIMD kernel this CPU supports against its scalar twin on seeded data; exit code 3 on any mismatch. Run it on new hardware.");
        command.Options.Add(threads);
        command.Options.Add(seed);
        command.SetAction(parse => CliErrors.Run(parse, _ =>
        {
            InfoCommand.PrintMachine();
            IReadOnlyList<KernelSelfTestResult> results = KernelSelfTest.Run(Math.Max(1, ModelOptions.ReadThreads(parse, threads)), parse.GetValue(seed));
            int failed = 0;
            foreach (var group in results.GroupBy(r => r.Kernel))
            {
                int bad = group.Count(r => !r.Passed);
                failed += bad;
                Console.WriteLine($"{(bad == 0 ? "PASS" : "FAIL")}  {group.Key,-28} {group.Count() - bad}/{group.Count()} shapes, max error {group.Max(r => r.MaxError):G3}");
                foreach (KernelSelfTestResult r in group.Where(r => !r.Passed))
                    Console.WriteLine($"      mismatch on {r.Shape}: max error {r.MaxError:G6} > tolerance {r.Tolerance:G6}");
            }
            if (results.Count == 0) Console.WriteLine("no SIMD kernel is supported here: only the scalar kernels run (nothing to compare)");
            Console.WriteLine($"selftest: {results.Count - failed} passed, {failed} failed");
            return failed == 0 ? ExitCodes.Success : ExitCodes.CheckFailed;
        }));
        return command;
    }
}
