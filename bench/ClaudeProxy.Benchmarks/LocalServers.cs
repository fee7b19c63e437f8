using System.Runtime.InteropServices;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Benchmarks;

/// <summary>Redis and PostgreSQL for bench/run.sh, started by the very code the tests start them with.</summary>
public static class LocalServers
{
    public static async Task RunAsync(string portsFile)
    {
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        await using var redis = await RedisServer.StartAsync();
        await using var postgres = await PostgresServer.StartAsync();
        var temporary = portsFile + ".tmp";
        await File.WriteAllTextAsync(temporary, $"redis_port={redis.Port}\npg_port={postgres.Port}\n");
        File.Move(temporary, portsFile, overwrite: true);
        await stop.Task;
    }
}
