using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// A gateway running as its own OS process (see <see cref="GatewayProcess.StartAsync"/>): its ports, its output, and
/// whether it ended by itself or because the test stopped or killed it.
/// </summary>
public sealed class RunningGateway : IAsyncDisposable
{
    private const int MaxLines = 2000;
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private int _endedByTest;

    private RunningGateway(string name, Process process, int port, int managementPort)
    {
        Name = name;
        _process = process;
        BaseUrl = new Uri($"http://127.0.0.1:{port}");
        ManagementUrl = new Uri($"http://127.0.0.1:{managementPort}");
        Client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
    }

    public string Name { get; }
    public int ProcessId => _process.Id;
    public Uri BaseUrl { get; }
    public Uri ManagementUrl { get; }
    public HttpClient Client { get; }

    /// <summary>True when the process ended without the test stopping or killing it.</summary>
    public bool ExitedByItself => _process.HasExited && Volatile.Read(ref _endedByTest) == 0;

    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>The last lines it wrote, standard output and error interleaved.</summary>
    public string Output => string.Join('\n', _lines);

    internal static RunningGateway Start(string name, IReadOnlyDictionary<string, string> environment, int port, int managementPort)
    {
        var all = new Dictionary<string, string>(environment)
        {
            ["HOST"] = "127.0.0.1",
            ["PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["MANAGEMENT_PORT"] = managementPort.ToString(CultureInfo.InvariantCulture),
        };
        var process = Process.Start(GatewayProcess.StartInfo(all)) ?? throw new InvalidOperationException("dotnet did not start");
        var gateway = new RunningGateway(name, process, port, managementPort);
        process.OutputDataReceived += (_, e) => gateway.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => gateway.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return gateway;
    }

    private void Keep(string? line)
    {
        if (line is null)
        {
            return;
        }
        _lines.Enqueue(line);
        while (_lines.Count > MaxLines && _lines.TryDequeue(out _))
        {
        }
    }

    /// <summary>Waits until <c>/healthz</c> answers 200; false when the process exits first or the time runs out.</summary>
    public async Task<bool> WaitReadyAsync(TimeSpan timeout)
    {
        using var probe = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout && !_process.HasExited)
        {
            try
            {
                using var response = await probe.GetAsync("/healthz");
                if (response.IsSuccessStatusCode)
                {
                    return true;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            await Task.Delay(100);
        }
        return false;
    }

    /// <summary>SIGKILL: the process ends at once, with no chance to flush or drain anything.</summary>
    public async Task KillAsync()
    {
        Volatile.Write(ref _endedByTest, 1);
        if (!_process.HasExited)
        {
            _process.Kill();
        }
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }

    /// <summary>SIGTERM, as an orchestrator stops a pod; waits for the process to exit and returns its exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        Volatile.Write(ref _endedByTest, 1);
        if (!_process.HasExited)
        {
            Signals.Send(_process.Id, Signals.Terminate);
        }
        await _process.WaitForExitAsync().WaitAsync(timeout);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (!_process.HasExited)
        {
            await KillAsync();
        }
        _process.Dispose();
    }
}
