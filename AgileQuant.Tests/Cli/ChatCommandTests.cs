using System.Diagnostics;
using static AgileQuant.Tests.Cli.AgileQuantProcess;

namespace AgileQuant.Tests.Cli;

/// <summary>
/// <c>agilequant chat</c> driven through a pseudo-terminal (Python's <c>pty</c> module, as a person types at a terminal)
/// and through a pipe: a scripted conversation with <c>/reset</c>, greedy so that replies are reproducible.
/// </summary>
[TestFixture]
public class ChatCommandTests
{
    private static readonly string[] Greedy = ["--model", Stories260K, "--temperature", "0", "--max-tokens", "24"];

    /// <summary>
    /// Spawns the tool on a pty; after each prompt marker it types the next line and waits for the next marker
    /// (the reply is done), then prints everything the terminal showed.
    /// </summary>
    private const string PtyDriver = """
        import os, pty, select, sys, time
        marker = sys.argv[1].encode()
        lines = sys.argv[2].split("\n")
        argv = sys.argv[3:]
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(argv[0], argv)
        out = b""
        def read_until(count, timeout=90):
            global out
            deadline = time.time() + timeout
            while time.time() < deadline:
                if out.count(marker) >= count:
                    return True
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        return False
                    if not data:
                        return False
                    out += data
            return False
        for i, line in enumerate(lines):
            if not read_until(i + 1):
                sys.stderr.write("no prompt marker %d\n" % (i + 1))
                break
            time.sleep(0.3)  # as a person would: after the prompt appears
            os.write(fd, (line + "\n").encode())
        read_until(10 ** 6, timeout=60)  # to the end of output
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 99)
        """;

    private static (int ExitCode, string Transcript, string Stderr) RunOnPty(string[] typed, params string[] args)
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in (string[])["-c", PtyDriver, "> ", string.Join('\n', typed), ToolPath, .. args]) start.ArgumentList.Add(arg);
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase)) Assert.Fail("python3 is needed to drive the chat through a pty");
            Assert.Ignore("needs python3 (its pty module drives the chat through a pseudo-terminal)");
            throw;
        }
        using (process)
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(240_000))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("the pty-driven chat did not finish within 240 s");
            }
            return (process.ExitCode, stdout.Result.Replace("\r\n", "\n"), stderr.Result);
        }
    }

    /// <summary>The text the terminal showed after each prompt marker: the echoed line, then the reply and notices.</summary>
    private static string[] Turns(string transcript) => transcript.Split(ChatCommandMarker)[1..];

    private const string ChatCommandMarker = "> ";

    /// <summary>
    /// The reply of one turn: what follows the echoed input. Text typed before the program reads it is echoed twice
    /// (by the terminal, then by .NET's line editor), so every leading copy of the typed line is skipped.
    /// </summary>
    private static string Reply(string turn, string typed)
    {
        List<string> lines = [.. turn.Split('\n')];
        while (lines.Count > 0 && lines[0].Trim() == typed) lines.RemoveAt(0);
        return string.Join('\n', lines).Trim();
    }

    [Test]
    public void AScriptedConversationThroughAPseudoTerminalWithReset()
    {
        (int code, string transcript, string stderr) = RunOnPty(["Once upon a time", "Lily went to the park", "/reset", "Once upon a time", "/exit"], ["chat", .. Greedy]);
        Assert.That(code, Is.EqualTo(0), transcript + stderr);
        string[] turns = Turns(transcript);
        Assert.That(turns, Has.Length.EqualTo(5), transcript);
        Assert.That(turns[0], Does.StartWith("Once upon a time\n"), "the terminal echoes what was typed");
        string first = Reply(turns[0], "Once upon a time"), second = Reply(turns[1], "Lily went to the park"), afterReset = Reply(turns[3], "Once upon a time");
        Assert.That(first, Is.Not.Empty, transcript);
        Assert.That(second, Is.Not.Empty, transcript);
        Assert.That(turns[2], Does.Contain("(history cleared)"));
        Assert.That(afterReset, Is.EqualTo(first), "after /reset the same message gets the same greedy reply: the history is gone");

        // The second turn saw the first: alone, the same message gets another reply (a pipe, not a terminal, no markers).
        var alone = Run(["chat", .. Greedy], "Lily went to the park\n"u8.ToArray());
        Assert.That(alone.ExitCode, Is.EqualTo(0), alone.Stderr);
        Assert.That(alone.Stdout.Trim(), Is.Not.Empty.And.Not.EqualTo(second));
    }

    [Test]
    public void PipedMessagesWithASystemPromptAndUnknownCommands()
    {
        var run = Run(["chat", .. Greedy, "--system", "You tell short stories."], "/help\nOnce upon a time\n"u8.ToArray());
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        Assert.That(run.Stderr, Does.Contain("unknown command /help"));
        Assert.That(run.Stdout, Does.Not.Contain(ChatCommandMarker), "no prompt marker when standard input is not a terminal");
        Assert.That(run.Stdout.Trim(), Is.Not.Empty);
    }

    [Test]
    public void TheOldestExchangesAreDroppedWhenTheContextIsFull()
    {
        // 512-token context, 256 reserved for each reply: a few long turns overflow it.
        string message = string.Concat(Enumerable.Repeat("Tom and Lily played in the park. ", 12));
        string input = string.Join('\n', Enumerable.Repeat(message, 4)) + "\n";
        var run = Run(["chat", "--model", Stories260K, "--temperature", "0", "--max-tokens", "256"], System.Text.Encoding.UTF8.GetBytes(input));
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Stderr);
        Assert.That(run.Stderr, Does.Contain("oldest exchange").And.Contain("to fit the context of 512 tokens"));
    }
}
