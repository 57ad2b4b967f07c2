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
        var command = new Command("selftest", "Check every SIMD kernel path this CPU supports (TRIP included) against its scalar twin on seeded data, that every path the CPU offers ran, and the bundled stories260K forward pass against llama2.c's logits; exit code 3 on any failure. Run it on new hardware.");
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
            int passed = results.Count - failed;
            Console.WriteLine($"paths run: {string.Join(", ", results.Select(r => r.Kernel).Distinct())}");
            foreach (string missing in KernelSelfTest.MissingPaths(results))
            {
                Console.WriteLine($"FAIL  not run: {missing}");
                failed++;
            }
            IMatMulKernel kernel = KernelSelector.Create(new KernelOptions { Threads = Math.Max(1, ModelOptions.ReadThreads(parse, threads)) });
            (bool modelPassed, double modelError, string detail) = SelfTestModelCheck.Run(Path.Combine(DemoCommand.AssetsDirectory, "models", "stories260K", "stories260K.bin"), kernel);
            Console.WriteLine($"{(modelPassed ? "PASS" : "FAIL")}  stories260K forward ({kernel.Name}) {SelfTestModelCheck.Reference.Length} positions vs llama2.c, max |Δlogit| {modelError:G3} (tolerance {SelfTestModelCheck.Tolerance:G3}){(modelPassed ? "" : ": " + detail)}");
            if (modelPassed) passed++;
            else failed++;
            Console.WriteLine($"selftest: {passed} passed, {failed} failed");
            return failed == 0 ? ExitCodes.Success : ExitCodes.CheckFailed;
        }));
        return command;
    }
}
