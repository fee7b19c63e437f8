using System.Diagnostics;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>Claude Code's CLI (npm @anthropic-ai/claude-code, installed into .tools/claude-code by scripts/lib/install.sh).</summary>
public static class ClaudeCli
{
    public static string Path => Environment.GetEnvironmentVariable("CLAUDE_CLI") is { Length: > 0 } cli ? cli
        : System.IO.Path.Combine(Repo.Root, ".tools", "claude-code", "node_modules", ".bin", "claude");

    /// <summary>Runs <c>claude -p PROMPT</c> against <paramref name="baseUrl"/> with a wrapper token, in a home of its own.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string baseUrl, string token, string prompt)
    {
        Assert.True(File.Exists(Path), $"{Path} is missing: run ./test.sh, or source scripts/lib/install.sh && ensure_claude_code");
        var home = Directory.CreateTempSubdirectory("claudeproxy-claude-home-").FullName;
        try
        {
            var start = new ProcessStartInfo(Path) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            start.ArgumentList.Add("-p");
            start.ArgumentList.Add(prompt);
            foreach (var name in new[] { "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR" })
            {
                start.Environment.Remove(name);
            }
            start.Environment["HOME"] = home;
            start.Environment["ANTHROPIC_BASE_URL"] = baseUrl;
            start.Environment["ANTHROPIC_AUTH_TOKEN"] = token;
            start.Environment["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1";
            start.Environment["DISABLE_AUTOUPDATER"] = "1";
            using var process = Process.Start(start)!;
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"claude -p did not finish in 2 minutes: {await stdout}{await stderr}");
            }
            return (process.ExitCode, process.ExitCode == 0 ? await stdout : await stdout + await stderr);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }
}

/// <summary>
/// A person's Claude Code: a HOME of its own whose settings send sign-in to a gateway (forceLoginMethod gateway), kept
/// across several runs of the CLI, and a working folder that exists for as long as the home does.
/// </summary>
public sealed class ClaudeHome : IDisposable
{
    private ClaudeHome(string home, string workingDirectory)
    {
        Home = home;
        WorkingDirectory = workingDirectory;
    }

    public string Home { get; }
    public string WorkingDirectory { get; }

    /// <summary>Where the CLI keeps the gateway's tokens after <c>claude auth login</c>.</summary>
    public string CredentialsPath => System.IO.Path.Combine(Home, ".claude", ".credentials.json");

    public static ClaudeHome ForGateway(Uri gateway)
    {
        var home = Create();
        File.WriteAllText(System.IO.Path.Combine(home.Home, ".claude", "settings.json"), System.Text.Json.JsonSerializer.Serialize(new
        {
            forceLoginMethod = "gateway",
            forceLoginGatewayUrl = gateway.GetLeftPart(UriPartial.Authority),
        }));
        return home;
    }

    /// <summary>A home with no settings: where the CLI sends its requests is up to its environment.</summary>
    public static ClaudeHome Create()
    {
        Assert.True(File.Exists(ClaudeCli.Path), $"{ClaudeCli.Path} is missing: run ./test.sh, or source scripts/lib/install.sh && ensure_claude_code");
        var home = Directory.CreateTempSubdirectory("claudeproxy-claude-home-").FullName;
        Directory.CreateDirectory(System.IO.Path.Combine(home, ".claude"));
        var work = System.IO.Path.Combine(home, "work");
        Directory.CreateDirectory(work);
        return new ClaudeHome(home, work);
    }

    /// <summary>The <c>enterpriseGateway</c> entry of the credentials file, or null when there is no file.</summary>
    public System.Text.Json.JsonElement? Credentials() => File.Exists(CredentialsPath)
        ? System.Text.Json.JsonDocument.Parse(File.ReadAllText(CredentialsPath)).RootElement.GetProperty("enterpriseGateway").Clone()
        : null;

    /// <summary>Starts the CLI with <paramref name="arguments"/>; its standard input stays open until the run is disposed.</summary>
    public ClaudeRun Start(params string[] arguments)
    {
        var start = new ProcessStartInfo(ClaudeCli.Path)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
            WorkingDirectory = WorkingDirectory,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("ANTHROPIC_", StringComparison.Ordinal) || k.StartsWith("CLAUDE_", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(name);
        }
        start.Environment["HOME"] = Home;
        start.Environment["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1";
        start.Environment["DISABLE_AUTOUPDATER"] = "1";
        start.Environment["DISABLE_TELEMETRY"] = "1";
        return new ClaudeRun(Process.Start(start)!);
    }

    /// <summary>Runs the CLI to its end with standard input closed; returns its exit code and everything it printed.</summary>
    public async Task<(int ExitCode, string Output)> RunAsync(TimeSpan timeout, params string[] arguments)
    {
        await using var run = Start(arguments);
        run.CloseInput();
        var exit = await run.ExitAsync(timeout);
        return (exit, run.Output);
    }

    public void Dispose() => Directory.Delete(Home, recursive: true);
}

/// <summary>One running CLI: its standard output as lines to await one by one, its standard input to answer on.</summary>
public sealed class ClaudeRun : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _printed = new();
    private readonly Task _reading;

    internal ClaudeRun(Process process)
    {
        _process = process;
        _reading = Task.WhenAll(ReadAsync(process.StandardOutput, toLines: true), ReadAsync(process.StandardError, toLines: false));
    }

    /// <summary>Everything printed so far, standard output and standard error, line by line.</summary>
    public string Output => string.Join('\n', _printed);

    private async Task ReadAsync(StreamReader reader, bool toLines)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            _printed.Enqueue(line);
            if (toLines)
            {
                _lines.Writer.TryWrite(line);
            }
        }
        if (toLines)
        {
            _lines.Writer.TryComplete();
        }
    }

    /// <summary>The next line of standard output that is a JSON object; fails when the CLI ends or goes quiet first.</summary>
    public async Task<System.Text.Json.JsonElement> NextJsonAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(cts.Token);
                if (line.TrimStart().StartsWith('{'))
                {
                    return System.Text.Json.JsonDocument.Parse(line).RootElement.Clone();
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"claude printed no JSON line in {timeout}:\n{Output}");
        }
        catch (System.Threading.Channels.ChannelClosedException)
        {
            throw new InvalidOperationException($"claude ended without the awaited JSON line:\n{Output}");
        }
    }

    public async Task WriteLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    public void CloseInput() => _process.StandardInput.Close();

    /// <summary>Waits for the CLI to end and for all it printed to be read; kills it and fails after <paramref name="timeout"/>.</summary>
    public async Task<int> ExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await _reading.WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"claude did not finish in {timeout}:\n{Output}");
        }
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        _process.Dispose();
    }
}
