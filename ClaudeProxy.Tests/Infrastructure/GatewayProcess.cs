using System.Diagnostics;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>Runs the built gateway as its own process, with exactly the environment given.</summary>
public static class GatewayProcess
{
    public static async Task<(int ExitCode, string StdOut, string StdErr)> RunAsync(IDictionary<string, string> environment, params string[] args)
    {
        using var process = Process.Start(StartInfo(environment, args))!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>
    /// Starts a gateway that keeps running, on free loopback ports of its own (PORT and MANAGEMENT_PORT are chosen
    /// here), and waits until it answers <c>/healthz</c>. A port taken between being found free and being bound
    /// makes the process exit at once: then other ports are tried.
    /// </summary>
    public static async Task<RunningGateway> StartAsync(IReadOnlyDictionary<string, string> environment, string name)
    {
        for (var attempt = 1; ; attempt++)
        {
            var gateway = RunningGateway.Start(name, environment, RedisServer.FreePort(), RedisServer.FreePort());
            if (await gateway.WaitReadyAsync(TimeSpan.FromSeconds(90)))
            {
                return gateway;
            }
            var output = gateway.Output;
            await gateway.DisposeAsync();
            if (attempt == 3 || !output.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidOperationException($"gateway {name} did not become healthy:\n{output}");
            }
        }
    }

    internal static ProcessStartInfo StartInfo(IEnumerable<KeyValuePair<string, string>> environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ClaudeProxy.Gateway.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment.Clear();
        start.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH");
        start.Environment["HOME"] = Environment.GetEnvironmentVariable("HOME") ?? "/tmp";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in environment)
        {
            start.Environment[k] = v;
        }
        return start;
    }
}
