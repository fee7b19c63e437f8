using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>A real redis-server on a free loopback port in a temporary folder, that tests may stop and start again.</summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("claudeproxy-redis-").FullName;
    private Process? _process;

    private RedisServer(int port) => Port = port;

    public int Port { get; private set; }
    public string ConnectionString => $"127.0.0.1:{Port}";
    public string Url => $"redis://127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync()
    {
        var server = new RedisServer(FreePort());
        // A port found free can be taken before redis-server binds it: then it exits at once, and another is tried.
        for (var attempt = 1; !await server.TryFirstStartAsync(); attempt++)
        {
            if (attempt == 5)
            {
                throw new InvalidOperationException($"redis-server could not bind a port in {attempt} attempts");
            }
            server.Port = FreePort();
        }
        return server;
    }

    private ProcessStartInfo StartInfo()
    {
        var start = new ProcessStartInfo("redis-server")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _directory,
        };
        foreach (var arg in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory, "--protected-mode", "no" })
        {
            start.ArgumentList.Add(arg);
        }
        return start;
    }

    /// <summary>Starts redis-server; false when it exited before saying it was ready (its port was taken).</summary>
    private async Task<bool> TryFirstStartAsync()
    {
        var start = StartInfo();
        var ready = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                ready.TrySetResult(false);
            }
            else if (e.Data.Contains("Ready to accept connections", StringComparison.Ordinal))
            {
                ready.TrySetResult(true);
            }
        };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!await ready.Task.WaitAsync(TimeSpan.FromSeconds(30)))
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            process.Dispose();
            return false;
        }
        _process = process;
        await WaitForAsync(ready: true);
        return true;
    }

    public async Task StartAgainAsync()
    {
        var start = StartInfo();
        _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await WaitForAsync(ready: true);
    }

    /// <summary>Kills the server at once, as a crash would: what it held is lost.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        File.Delete(Path.Combine(_directory, "dump.rdb"));
        await WaitForAsync(ready: false);
    }

    /// <summary>Stops the server with its data saved, as a failover that keeps the data would; <see cref="StartAgainAsync"/> loads it back.</summary>
    public async Task StopAsync()
    {
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, Port);
            await client.GetStream().WriteAsync("SHUTDOWN SAVE\r\n"u8.ToArray());
            await _process!.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }
        await WaitForAsync(ready: false);
    }

    /// <summary>Stops the server answering while its connections stay open (SIGSTOP), as a stalled Redis or a network partition would.</summary>
    public void Freeze() => Signals.Send(_process?.Id ?? throw new InvalidOperationException("redis-server is not running"), Signals.Stop);

    /// <summary>Lets a frozen server run again (SIGCONT): it answers what waited, in order.</summary>
    public void Thaw() => Signals.Send(_process?.Id ?? throw new InvalidOperationException("redis-server is not running"), Signals.Continue);

    private async Task WaitForAsync(bool ready)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            if (await PingAsync() == ready)
            {
                return;
            }
            await Task.Delay(25);
        }
        throw new TimeoutException($"redis-server on port {Port} did not become {(ready ? "ready" : "unreachable")}");
    }

    private async Task<bool> PingAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[16];
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(1));
            return read > 0 && buffer[0] == (byte)'+';
        }
        catch (Exception e) when (e is SocketException or IOException or TimeoutException)
        {
            return false;
        }
    }

    /// <summary>
    /// A loopback port that is free now, chosen below the kernel's ephemeral range: outgoing connections take their
    /// local ports from that range, so a port found free and bound a moment later (or a server stopped and started
    /// again on it) is not taken by one of them. Whoever binds it still retries on the rare clash with another
    /// test's choice.
    /// </summary>
    public static int FreePort()
    {
        var below = EphemeralStart();
        for (var attempt = 0; attempt < 50 && below > 10_000; attempt++)
        {
            var port = Random.Shared.Next(10_000, below);
            try
            {
                using var probe = new TcpListener(IPAddress.Loopback, port);
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static int EphemeralStart()
    {
        try
        {
            return int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0],
                System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 32_768;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }
        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
