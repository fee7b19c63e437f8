using System.Diagnostics;
using System.Text.Json.Nodes;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// Claude Code's interactive CLI in a terminal of its own: a detached tmux session on a server of its own (its socket
/// lives in the person's home), typed into with <c>send-keys</c> and read with <c>capture-pane</c>. What the CLI shows
/// only on its screen (notices under an answer, the status line) is tested this way; <c>claude -p</c> prints the answer
/// alone.
/// </summary>
public sealed class ClaudeTmuxSession : IAsyncDisposable
{
    /// <summary>How long one tmux command may take on a loaded machine.</summary>
    private static readonly TimeSpan TmuxCommand = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);
    private const string Session = "claude";
    private readonly string _socket;

    private ClaudeTmuxSession(string socket) => _socket = socket;

    /// <summary>What the screen showed when it was last read.</summary>
    public string LastScreen { get; private set; } = "";

    /// <summary>
    /// Starts <c>claude</c> in <paramref name="home"/>'s working folder, a terminal of <paramref name="width"/> ×
    /// <paramref name="height"/> characters, with an environment of only HOME, PATH, a UTF-8 locale and
    /// <paramref name="environment"/>. The home's <c>~/.claude.json</c> records onboarding as done and the working
    /// folder as trusted, so the CLI opens at its prompt; returns once the prompt is on the screen.
    /// </summary>
    public static async Task<ClaudeTmuxSession> StartAsync(ClaudeHome home, IReadOnlyDictionary<string, string>? environment = null,
        int width = 160, int height = 50)
    {
        Assert.True(File.Exists(ClaudeCli.Path), $"{ClaudeCli.Path} is missing: run ./test.sh, or source scripts/lib/install.sh && ensure_claude_code");
        MarkOnboarded(home);
        var session = new ClaudeTmuxSession(Path.Combine(home.Home, "tmux.sock"));
        var variables = new Dictionary<string, string>
        {
            ["HOME"] = home.Home,
            ["PATH"] = Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin",
            ["LANG"] = "C.UTF-8",
            ["TERM"] = "xterm-256color",
            ["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1",
            ["DISABLE_AUTOUPDATER"] = "1",
            ["DISABLE_TELEMETRY"] = "1",
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            variables[name] = value;
        }
        // env -i: the CLI sees none of the test runner's variables (ANTHROPIC_*, CLAUDE_*), only these.
        List<string> arguments = ["new-session", "-d", "-s", Session, "-x", width.ToString(), "-y", height.ToString(), "-c", home.WorkingDirectory,
            "env", "-i", .. variables.Select(v => $"{v.Key}={v.Value}"), ClaudeCli.Path];
        try
        {
            await session.TmuxAsync(arguments);
            await session.WaitForAsync(s => s.Contains('❯'), "Claude Code's prompt (❯)", TimeSpan.FromSeconds(60));
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
        return session;
    }

    /// <summary>Onboarding done and the working folder trusted, kept beside whatever the CLI wrote there already (a sign-in).</summary>
    private static void MarkOnboarded(ClaudeHome home)
    {
        var path = Path.Combine(home.Home, ".claude.json");
        var state = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path))!.AsObject() : [];
        state["hasCompletedOnboarding"] = true;
        var projects = state["projects"] as JsonObject ?? [];
        state["projects"] = projects;
        var project = projects[home.WorkingDirectory] as JsonObject ?? [];
        projects[home.WorkingDirectory] = project;
        project["hasTrustDialogAccepted"] = true;
        File.WriteAllText(path, state.ToJsonString());
    }

    /// <summary>Types <paramref name="text"/> at the prompt and presses Enter.</summary>
    public async Task SendAsync(string text)
    {
        await TmuxAsync(["send-keys", "-t", Session, "-l", text]);
        await TmuxAsync(["send-keys", "-t", Session, "Enter"]);
    }

    /// <summary>The visible screen as text, wrapped lines joined.</summary>
    public async Task<string> ScreenAsync() => LastScreen = await TmuxAsync(["capture-pane", "-p", "-J", "-t", Session]);

    /// <summary>Reads the screen until it contains <paramref name="text"/>; returns that screen.</summary>
    public Task<string> WaitForAsync(string text, TimeSpan timeout) =>
        WaitForAsync(s => s.Contains(text, StringComparison.Ordinal), $"\"{text}\"", timeout);

    /// <summary>
    /// Reads the screen every tenth of a second until <paramref name="condition"/> holds; returns that screen. A
    /// terminal announces nothing, so its screen is polled; after <paramref name="timeout"/> this fails with the last
    /// screen in the message.
    /// </summary>
    public async Task<string> WaitForAsync(Func<string, bool> condition, string what, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var screen = await ScreenAsync();
            if (condition(screen))
            {
                return screen;
            }
            if (deadline.Elapsed >= timeout)
            {
                throw new TimeoutException($"Claude Code's screen showed no {what} in {timeout.TotalSeconds:0} s. The screen:\n{Trimmed(screen)}");
            }
            await Task.Delay(Poll);
        }
    }

    /// <summary>The screen without trailing spaces and blank lines, for messages.</summary>
    public static string Trimmed(string screen) =>
        System.Text.RegularExpressions.Regex.Replace(string.Join('\n', screen.Split('\n').Select(l => l.TrimEnd())), "\n{3,}", "\n\n").Trim('\n');

    private async Task<string> TmuxAsync(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // -u: the screen is UTF-8 whatever the runner's locale; -f /dev/null: no one's tmux configuration.
        foreach (var argument in (string[])["-u", "-f", "/dev/null", "-S", _socket, .. arguments])
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("tmux did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TmuxCommand);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"tmux {string.Join(' ', arguments)} did not finish in {TmuxCommand.TotalSeconds:0} s");
        }
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"tmux {string.Join(' ', arguments.Take(2))} failed ({process.ExitCode}): {await stderr}");
        }
        return await stdout;
    }

    /// <summary>
    /// Ends the CLI and then the tmux server. The CLI is killed outright and awaited, so it writes nothing more into the
    /// person's home once this returns (a hang-up from tmux alone lets it save its state while the home is removed).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            var panes = await TmuxAsync(["list-panes", "-s", "-t", Session, "-F", "#{pane_pid}"]);
            foreach (var line in panes.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                await KillAsync(int.Parse(line, System.Globalization.CultureInfo.InvariantCulture));
            }
            await TmuxAsync(["kill-server"]);
        }
        catch (InvalidOperationException)
        {
            // The server had already gone (the CLI ended, and with it the only session).
        }
    }

    private static async Task KillAsync(int pid)
    {
        Process process;
        try
        {
            process = Process.GetProcessById(pid);
        }
        catch (ArgumentException)
        {
            return; // already ended
        }
        using (process)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                return; // ended in between
            }
            using var timeout = new CancellationTokenSource(TmuxCommand);
            await process.WaitForExitAsync(timeout.Token);
        }
    }
}
