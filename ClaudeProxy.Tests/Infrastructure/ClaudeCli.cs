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
