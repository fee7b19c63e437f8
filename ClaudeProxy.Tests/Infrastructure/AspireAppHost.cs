using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// The whole AppHost started through Aspire.Hosting.Testing, as `aspire run` starts it: a fresh data folder, the
/// simulator upstream, free ports, optionally the dashboard on plain http. Knows every process DCP started for it,
/// so a test can check that none is left once it is disposed.
/// </summary>
public sealed class AspireAppHost : IAsyncDisposable
{
    public static readonly string[] Services = ["redis", "postgres", "claudeproxydb", "anthropic-simulator", "devidentity", "gateway", "admin"];
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(4);

    private AspireAppHost(DistributedApplication app, string data)
    {
        App = app;
        DataDirectory = data;
    }

    public DistributedApplication App { get; }
    public string DataDirectory { get; }
    /// <summary>Where the dashboard listens (the testing builder picks its ports), when it runs.</summary>
    public string? DashboardUrl { get; private set; }

    /// <summary>Processes DCP runs for this app (DCP itself, the dashboard, every resource and their children), read once all are healthy.</summary>
    public List<int> Processes { get; } = [];

    public Dictionary<string, string> Secrets =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Path.Combine(DataDirectory, "secrets.json")))!;

    public static async Task<AspireAppHost> StartAsync(bool dashboard)
    {
        using var timeout = new CancellationTokenSource(StartTimeout);
        var data = Directory.CreateTempSubdirectory("claudeproxy-aspire-").FullName;
        string[] args =
        [
            $"--DataDir={data}", "--DynamicPorts=true", "--ANTHROPIC_API_KEY=", "--Parameters:anthropic-api-key=",
            .. dashboard
                ? new[]
                {
                    $"--ASPNETCORE_URLS=http://127.0.0.1:{FreePort()}", $"--ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL=http://127.0.0.1:{FreePort()}",
                    "--ASPIRE_ALLOW_UNSECURED_TRANSPORT=true", "--DOTNET_DASHBOARD_UNSECURED_ALLOW_ANONYMOUS=true",
                }
                : [],
        ];
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.ClaudeProxy_AppHost>(args,
            (options, _) => options.DisableDashboard = !dashboard, timeout.Token);
        var app = await builder.BuildAsync(timeout.Token);
        var host = new AspireAppHost(app, data);
        try
        {
            await app.StartAsync(timeout.Token);
            foreach (var name in Services)
            {
                await app.ResourceNotifications.WaitForResourceHealthyAsync(name, timeout.Token);
            }
            await app.ResourceNotifications.WaitForResourceAsync("migrations", KnownResourceStates.Finished, timeout.Token);
            if (dashboard)
            {
                // The dashboard resource also lists its OTLP endpoints; the browser's is named "http".
                var state = await app.ResourceNotifications.WaitForResourceAsync("aspire-dashboard",
                    e => e.Snapshot.Urls.Any(u => u.Name == "http"), timeout.Token);
                host.DashboardUrl = state.Snapshot.Urls.First(u => u.Name == "http").Url.TrimEnd('/');
            }
            host.Processes.AddRange(ProcessTree.DescendantsOf(ProcessTree.Dcp(Environment.ProcessId)));
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
        return host;
    }

    public HttpClient Client(string resource, string endpoint = "http") => App.CreateHttpClient(resource, endpoint);

    public Uri Endpoint(string resource, string endpoint = "http") => App.GetEndpoint(resource, endpoint);

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync().WaitAsync(TimeSpan.FromMinutes(2));
        await App.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromMinutes(2));
    }

    /// <summary>Waits (up to a minute) for every process DCP ran to be gone; returns those still alive.</summary>
    public async Task<List<int>> LeftoverProcessesAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        List<int> alive;
        while ((alive = Processes.Where(ProcessTree.Alive).ToList()).Count > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(250);
        }
        return alive;
    }

    public void DeleteData()
    {
        try
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Linux process tree, read from /proc.</summary>
public static class ProcessTree
{
    public static bool Alive(int pid) =>
        File.Exists($"/proc/{pid}/stat") && TryRead($"/proc/{pid}/stat") is { } stat && stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0] != "Z";

    /// <summary>The DCP processes that watch <paramref name="appHostPid"/> (they stop everything when it goes away).</summary>
    public static List<int> Dcp(int appHostPid) =>
        [.. All().Where(p => TryRead($"/proc/{p}/cmdline") is { } cmd && cmd.Contains("dcp", StringComparison.Ordinal) &&
            cmd.Replace('\0', ' ').Contains($"--monitor {appHostPid} ", StringComparison.Ordinal))];

    public static List<int> DescendantsOf(IEnumerable<int> roots)
    {
        var parents = All().Select(p => (Pid: p, Parent: Parent(p))).Where(p => p.Parent > 0).ToList();
        var found = new HashSet<int>(roots);
        var added = true;
        while (added)
        {
            added = false;
            foreach (var (pid, parent) in parents)
            {
                if (found.Contains(parent) && found.Add(pid))
                {
                    added = true;
                }
            }
        }
        return [.. found];
    }

    private static int Parent(int pid) =>
        TryRead($"/proc/{pid}/stat") is { } stat && int.TryParse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], out var parent) ? parent : 0;

    private static IEnumerable<int> All() =>
        Directory.GetDirectories("/proc").Select(Path.GetFileName).Select(n => int.TryParse(n, out var pid) ? pid : 0).Where(p => p > 0);

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
