using System.Diagnostics;

namespace AgileQuant.Tests.Cli;

/// <summary>Runs the built <c>agilequant</c> tool (beside the test assembly) as a process, stdout and stderr captured.</summary>
internal static class AgileQuantProcess
{
    public static string ToolPath => Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "agilequant.exe" : "agilequant");

    public static string Stories260K => SharedAssets.InRepo("assets/models/stories260K/stories260K.bin");

    /// <summary>Runs the tool with <paramref name="args"/>; <paramref name="stdin"/> bytes are written to its standard input (then closed).</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string[] args, byte[]? stdin = null, int timeoutMs = 120_000)
    {
        var start = new ProcessStartInfo(ToolPath)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null) process.StandardInput.BaseStream.Write(stdin);
        process.StandardInput.Close();
        if (!process.WaitForExit(timeoutMs))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"agilequant {string.Join(' ', args)} did not finish within {timeoutMs / 1000} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => Run(args, null);

    /// <summary>
    /// Starts <c>agilequant serve</c> with <paramref name="args"/> (which should include <c>--port 0</c>) and waits for the
    /// address it prints; the caller kills the process. Fails the test with the server's stderr when no address comes.
    /// </summary>
    public static (Process Server, Uri BaseAddress) StartServer(params string[] args)
    {
        var start = new ProcessStartInfo(ToolPath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("serve");
        foreach (string arg in args) start.ArgumentList.Add(arg);
        Process server = Process.Start(start)!;
        var stderr = new System.Text.StringBuilder();
        server.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        server.BeginErrorReadLine();
        const string listening = "agilequant: listening on ";
        Task<string?> address = Task.Run(() =>
        {
            while (server.StandardOutput.ReadLine() is { } line)
                if (line.StartsWith(listening, StringComparison.Ordinal)) return line[listening.Length..];
            return null;
        });
        if (!address.Wait(120_000) || address.Result is null)
        {
            server.Kill(entireProcessTree: true);
            server.Dispose();
            lock (stderr) Assert.Fail("the server did not report its address: " + stderr);
        }
        return (server, new Uri(address.Result!.TrimEnd('/') + "/"));
    }

    /// <summary>The stderr lines that are not the loader's "loaded …" report.</summary>
    public static string[] ErrorLines(string stderr) =>
        stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => !l.StartsWith("loaded ", StringComparison.Ordinal)).ToArray();
}
