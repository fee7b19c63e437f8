using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading.Channels;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests;

/// <summary>The AppHost end to end, as a developer runs it (with the simulator upstream and free ports).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class AppHostTests
{
    private sealed class AppHostProcess : IAsyncDisposable
    {
        private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
        public Process Process { get; }
        public List<string> Output { get; } = [];

        public AppHostProcess(string dataDir)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Repo.Root };
            foreach (var arg in new[] { Repo.AppHostDll, "--data-dir", dataDir, "--dynamic-ports", "--configuration", Repo.Configuration })
            {
                start.ArgumentList.Add(arg);
            }
            start.Environment.Remove("ANTHROPIC_API_KEY");
            start.Environment["LOG_LEVEL"] = "warn";
            Process = Process.Start(start)!;
            Process.OutputDataReceived += (_, e) => Add(e.Data);
            Process.ErrorDataReceived += (_, e) => Add(e.Data);
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        private void Add(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (Output)
            {
                Output.Add(line);
            }
            _lines.Writer.TryWrite(line);
        }

        /// <summary>Waits for a line of output containing <paramref name="text"/>.</summary>
        public async Task WaitForAsync(string text)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            try
            {
                await foreach (var line in _lines.Reader.ReadAllAsync(timeout.Token))
                {
                    if (line.Contains(text, StringComparison.Ordinal))
                    {
                        return;
                    }
                    if (line.Contains("Start-up failed", StringComparison.Ordinal))
                    {
                        throw new InvalidOperationException(string.Join('\n', Output));
                    }
                }
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no '{text}' in:\n{string.Join('\n', Output)}");
            }
        }

        public async Task InterruptAsync()
        {
            Assert.Equal(0, SendSignal(Process.Id, 2));
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            await Process.WaitForExitAsync(timeout.Token);
        }

        public async ValueTask DisposeAsync()
        {
            if (!Process.HasExited)
            {
                await InterruptAsync();
            }
            Process.Dispose();
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int SendSignal(int pid, int signal);

    private static bool Alive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2].Equals("Z", StringComparison.Ordinal);

    [Fact]
    public async Task Runs_the_whole_system_streams_through_it_stops_cleanly_and_keeps_its_data()
    {
        var data = Directory.CreateTempSubdirectory("claudeproxy-apphost-").FullName;
        var device = "apphost-" + Guid.NewGuid().ToString("N")[..6];
        List<int> pids;
        await using (var apphost = new AppHostProcess(data))
        {
            await apphost.WaitForAsync("ClaudeProxy is running.");
            Assert.Contains(apphost.Output, l => l.Contains("SIMULATOR", StringComparison.Ordinal));
            Assert.Contains(apphost.Output, l => l.Contains("ANTHROPIC_BASE_URL=", StringComparison.Ordinal) && l.Contains("claude", StringComparison.Ordinal));
            var secrets = File.ReadAllLines(Path.Combine(data, "secrets.env")).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, "secrets.env")));
            using var resources = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(data, "resources.json")));
            pids = [.. resources.RootElement.EnumerateArray().SelectMany(r => r.GetProperty("pids").EnumerateArray().Select(p => p.GetInt32()))];
            Assert.True(pids.Count >= 5, resources.RootElement.ToString());
            string Url(string name) => resources.RootElement.EnumerateArray().Single(r => r.GetProperty("name").GetString() == name).GetProperty("urls")[0].GetString()!;

            using var http = new HttpClient();
            foreach (var name in new[] { "gateway", "admin" })
            {
                using var ready = await http.GetAsync(Url(name) + "/readyz");
                Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
                Assert.Contains("Healthy", await ready.Content.ReadAsStringAsync());
            }
            var gateway = Url("gateway");
            using var boot = await http.PostAsJsonAsync(gateway + "/bootstrap", new { device_id = device });
            var token = JsonDocument.Parse(await boot.Content.ReadAsStringAsync()).RootElement.GetProperty("wrapper_token").GetString();
            using var stream = await http.SendAsync(Http.Post(gateway + "/v1/messages", Http.StreamMessage, bearer: token));
            Assert.Contains("event: message_stop", await stream.Content.ReadAsStringAsync());

            // The management endpoint, as the admin app finds it.
            var management = apphost.Output.Select(l => ManagementLine().Match(l)).First(m => m.Success).Groups[1].Value;
            using var manage = new HttpClient { BaseAddress = new Uri(management) };
            manage.DefaultRequestHeaders.Authorization = new("Bearer", secrets["ADMIN_API_KEY"]);
            var clock = Stopwatch.StartNew();
            int total;
            do
            {
                using var events = await manage.GetAsync($"/manage/v1/usage/events?device={device}");
                total = JsonDocument.Parse(await events.Content.ReadAsStringAsync()).RootElement.GetProperty("total").GetInt32();
            }
            while (total == 0 && clock.Elapsed < TimeSpan.FromSeconds(20) && await Delay());
            Assert.Equal(1, total);

            // What runs locally is what the manifest publishes: the same projects and references.
            using var manifest = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Repo.Root, "deploy", "k8s", "aspire-manifest.json")));
            foreach (var r in resources.RootElement.EnumerateArray().Where(r => r.GetProperty("type").GetString() == "project"))
            {
                var published = manifest.RootElement.GetProperty("resources").GetProperty(r.GetProperty("name").GetString()!);
                Assert.EndsWith(r.GetProperty("project").GetString() + ".csproj", published.GetProperty("path").GetString());
                var env = published.GetProperty("env").EnumerateObject().Select(p => p.Value.GetString()!).ToList();
                foreach (var reference in r.GetProperty("references").EnumerateArray().Select(x => x.GetString()!))
                {
                    var resource = reference.Split('.')[0];
                    Assert.Contains(env, v => v.StartsWith("{" + resource + ".", StringComparison.Ordinal));
                }
            }

            await apphost.InterruptAsync();
            Assert.Contains(apphost.Output, l => l.Contains("Stopped.", StringComparison.Ordinal));
        }
        Assert.All(pids, pid => Assert.False(Alive(pid), $"process {pid} was left running"));

        await using (var again = new AppHostProcess(data))
        {
            await again.WaitForAsync("ClaudeProxy is running.");
            Assert.Contains(again.Output, l => l.Contains("reusing the data", StringComparison.Ordinal));
            var secrets = File.ReadAllLines(Path.Combine(data, "secrets.env")).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            var management = again.Output.Select(l => ManagementLine().Match(l)).First(m => m.Success).Groups[1].Value;
            using var manage = new HttpClient { BaseAddress = new Uri(management) };
            manage.DefaultRequestHeaders.Authorization = new("Bearer", secrets["ADMIN_API_KEY"]);
            using var kept = await manage.GetAsync($"/manage/v1/devices/{device}");
            Assert.Equal(HttpStatusCode.OK, kept.StatusCode);
        }
        try
        {
            Directory.Delete(data, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static async Task<bool> Delay()
    {
        await Task.Delay(100);
        return true;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"Management API:\s+(http://\S+)")]
    private static partial System.Text.RegularExpressions.Regex ManagementLine();
}
