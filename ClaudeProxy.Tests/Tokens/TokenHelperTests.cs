using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>The real <c>scripts/claude-token-helper</c>, run with bash, curl and openssl against a real gateway.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TokenHelperTests(StackFixture fx) : IClassFixture<StackFixture>, IDisposable
{
    private static readonly string Script = Path.Combine(Repo.Root, "scripts", "claude-token-helper");
    private readonly string _root = Directory.CreateTempSubdirectory("claudeproxy-helper-").FullName;

    private sealed record Run(int ExitCode, string StdOut, string StdErr);

    private string Home => Path.Combine(_root, "home");

    private Task<GatewayHost> GatewayAsync(string db) => fx.GatewayAsync(db, s => s["BOOTSTRAP_RATE_LIMIT"] = "100000");

    /// <summary>Runs the helper; <paramref name="argvLog"/>, when given, records the arguments of every curl and openssl it starts.</summary>
    private async Task<Run> RunAsync(Uri gateway, string? deviceId = null, string? margin = null, string? argvLog = null, string timeout = "20", Uri? bootstrap = null)
    {
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Script);
        start.Environment.Clear();
        start.Environment["PATH"] = argvLog is null ? Environment.GetEnvironmentVariable("PATH") : $"{Wrappers(argvLog)}:{Environment.GetEnvironmentVariable("PATH")}";
        start.Environment["HOME"] = _root;
        start.Environment["CLAUDEPROXY_URL"] = gateway.ToString();
        start.Environment["CLAUDEPROXY_HOME"] = Home;
        start.Environment["CLAUDEPROXY_TIMEOUT"] = timeout;
        start.Environment["CLAUDEPROXY_CONNECT_TIMEOUT"] = "2";
        if (bootstrap is not null)
        {
            start.Environment["CLAUDEPROXY_BOOTSTRAP_URL"] = bootstrap.ToString();
        }
        if (deviceId is not null)
        {
            start.Environment["CLAUDEPROXY_DEVICE_ID"] = deviceId;
        }
        if (margin is not null)
        {
            start.Environment["CLAUDEPROXY_REFRESH_MARGIN"] = margin;
        }
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return new Run(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>A folder of curl and openssl stand-ins that log their arguments, then run the real tools.</summary>
    private string Wrappers(string argvLog)
    {
        var bin = Path.Combine(_root, "bin");
        Directory.CreateDirectory(bin);
        foreach (var tool in new[] { "curl", "openssl" })
        {
            var real = Which(tool);
            var path = Path.Combine(bin, tool);
            File.WriteAllText(path, $"#!/usr/bin/env bash\nprintf '%s\\n' \"$*\" >> '{argvLog}'\nexec '{real}' \"$@\"\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        return bin;
    }

    private static string Which(string tool) =>
        Environment.GetEnvironmentVariable("PATH")!.Split(':').Select(d => Path.Combine(d, tool)).First(File.Exists);

    private static string OnlyToken(Run run)
    {
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}: {run.StdErr}");
        Assert.Matches(@"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$", run.StdOut);
        return run.StdOut.TrimEnd('\n');
    }

    [Fact]
    public async Task The_helper_enrols_a_key_in_a_private_folder_and_prints_only_a_working_token()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var device = TestSecrets.DeviceId("helper");
        var run = await RunAsync(gateway.BaseUrl, device);
        var token = OnlyToken(run);
        Assert.Equal("", run.StdErr);

        using (var call = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }
        Assert.Equal("p256", await fx.ScalarAsync<string>(db, "SELECT key_algorithm FROM devices WHERE device_id = @id", ("id", device)));
        var key = Path.Combine(Home, "device-key.pem");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Home));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(Home, "token")));
        Assert.Empty(Directory.GetDirectories(Home));

        // The id alone no longer gets this device's token.
        using (var bare = await gateway.Client.SendAsync(Http.Post("/bootstrap", $$"""{"device_id":"{{device}}"}""")))
        {
            await Http.AssertErrorAsync(bare, 401, "authentication_error");
        }
        // A second run answers from the cache, and its token is the same.
        Assert.Equal(token, OnlyToken(await RunAsync(gateway.BaseUrl, device)));
    }

    [Fact]
    public async Task The_helper_refreshes_with_a_signed_request_and_keeps_token_and_key_off_command_lines()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var device = TestSecrets.DeviceId("signs");
        var log = Path.Combine(_root, "argv.log");
        var first = OnlyToken(await RunAsync(gateway.BaseUrl, device, argvLog: log));
        File.WriteAllText(log, "");

        // A margin longer than the token's life: the cached token is due for refresh now.
        var refreshed = OnlyToken(await RunAsync(gateway.BaseUrl, device, margin: "100000000", argvLog: log));
        Assert.NotEqual(first, refreshed);
        var argv = File.ReadAllText(log);
        Assert.Contains("/refresh", argv);
        Assert.DoesNotContain("/bootstrap", argv);
        using (var call = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: refreshed)))
        {
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }

        var keyLines = File.ReadAllLines(Path.Combine(Home, "device-key.pem")).Where(l => !l.StartsWith("-----", StringComparison.Ordinal));
        foreach (var secret in keyLines.Append(first).Append(refreshed).Append(first.Split('.')[2]))
        {
            Assert.DoesNotContain(secret, argv);
        }
    }

    [Fact]
    public async Task The_helper_enrols_on_the_internal_bootstrap_host_and_refreshes_on_the_public_one()
    {
        // Behind the Kubernetes ingresses /bootstrap is served on an internal host only; /refresh on the public one.
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var device = TestSecrets.DeviceId("hosts");
        var log = Path.Combine(_root, "argv.log");
        var publicUrl = new Uri($"http://localhost:{gateway.BaseUrl.Port}/");
        var internalUrl = new Uri($"http://127.0.0.1:{gateway.BaseUrl.Port}/");
        var first = OnlyToken(await RunAsync(publicUrl, device, argvLog: log, bootstrap: internalUrl));
        var curls = File.ReadAllLines(log).Where(l => l.Contains("http://", StringComparison.Ordinal)).ToList();
        Assert.Contains(curls, l => l.Contains($"{internalUrl.ToString().TrimEnd('/')}/bootstrap", StringComparison.Ordinal));
        Assert.DoesNotContain(curls, l => l.Contains("localhost", StringComparison.Ordinal));

        File.WriteAllText(log, "");
        var refreshed = OnlyToken(await RunAsync(publicUrl, device, margin: "100000000", argvLog: log, bootstrap: internalUrl));
        Assert.NotEqual(first, refreshed);
        curls = [.. File.ReadAllLines(log).Where(l => l.Contains("http://", StringComparison.Ordinal))];
        Assert.Contains(curls, l => l.Contains($"{publicUrl.ToString().TrimEnd('/')}/refresh", StringComparison.Ordinal));
        Assert.DoesNotContain(curls, l => l.Contains("/bootstrap", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_helper_uses_a_cached_token_that_is_still_valid_when_the_gateway_is_down_or_silent()
    {
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        var device = TestSecrets.DeviceId("offline");
        string token;
        Uri url;
        await using (var gateway = await GatewayHost.StartAsync(settings))
        {
            url = gateway.BaseUrl;
            token = OnlyToken(await RunAsync(url, device));
        }

        var down = await RunAsync(url, device, margin: "100000000");
        Assert.Equal(token, OnlyToken(down));
        Assert.Contains("cached token", down.StdErr);

        // A gateway that takes the connection and never answers: the helper gives up after its timeout.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var silentUrl = new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/");
        var clock = Stopwatch.StartNew();
        var unanswered = await RunAsync(silentUrl, device, margin: "100000000", timeout: "2");
        Assert.Equal(token, OnlyToken(unanswered));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");

        // Once the cached token has expired there is nothing to fall back on: no token, and a failure.
        File.WriteAllText(Path.Combine(Home, "token"), $"{token}\n{DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds()}\n");
        var expired = await RunAsync(url, device);
        Assert.NotEqual(0, expired.ExitCode);
        Assert.Equal("", expired.StdOut);
        Assert.Contains("cannot reach", expired.StdErr);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
