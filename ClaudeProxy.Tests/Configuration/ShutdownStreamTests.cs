using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ClaudeProxy.Tests.Configuration;

/// <summary>
/// A pod is stopped with SIGTERM while a long answer streams: the gateway takes no new connections, lets the stream
/// run to its end within SHUTDOWN_TIMEOUT_SECONDS, stores its usage, and exits cleanly.
/// </summary>
public sealed class ShutdownStreamTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private Dictionary<string, string> Environment(string db, string spool, string shutdownSeconds) => new()
    {
        ["ANTHROPIC_API_KEY"] = fx.MasterKey,
        ["ANTHROPIC_BASE_URL"] = fx.Simulator.BaseUrl.ToString(),
        ["JWT_SECRET"] = fx.JwtSecret,
        ["REDIS_URL"] = fx.Redis.Url,
        ["DATABASE_URL"] = fx.Postgres.Url(db),
        ["USAGE_SPOOL_DIR"] = spool,
        ["USAGE_FLUSH_MS"] = "1000",
        ["SHUTDOWN_TIMEOUT_SECONDS"] = shutdownSeconds,
        ["LOG_LEVEL"] = "warn",
    };

    [Fact]
    public async Task A_stream_in_flight_at_sigterm_runs_to_its_end_while_new_connections_are_refused_and_its_usage_is_stored()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-shutdown-" + db);
        await using var gateway = await GatewayProcess.StartAsync(Environment(db, spool, "120"), "shutdown-stream");
        var tag = "long-" + Guid.NewGuid().ToString("N");
        // 56 words: message_start, then content_block_start, ping, 56 deltas, content_block_stop, message_delta, message_stop,
        // a second between events: about a minute, twice the default shutdown timeout.
        const int words = 56;
        using var stream = await OpenStreamAsync(gateway, tag, words, delayMs: 1000, outputTokens: 4321);
        Assert.Equal("message_start", await stream.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(30)));

        var exited = gateway.StopAsync(TimeSpan.FromSeconds(150));
        var rest = stream.RestAsync();

        // A new connection is refused (or, if it still got in, told the gateway is not ready) while the stream runs on.
        var clock = Stopwatch.StartNew();
        while (!await RefusesNewWorkAsync(gateway.BaseUrl, "/v1/messages"))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the gateway still took new connections 10 s after SIGTERM");
            await Task.Delay(100);
        }
        Assert.True(await RefusesNewWorkAsync(gateway.ManagementUrl, "/readyz"), "/readyz answered 200 while the gateway was stopping");
        Assert.False(rest.IsCompleted, "the stream ended before new connections were refused: nothing was proven");
        Assert.Null(gateway.ExitCode);

        var events = await rest.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal("message_stop", events[^1]);
        Assert.Equal(words, events.Count(e => e == "content_block_delta"));
        Assert.Equal(words + 5, events.Count);
        Assert.Equal(0, await exited.WaitAsync(TimeSpan.FromSeconds(60)));

        // The process stopped after storing it: nothing is left to replay.
        var (output, estimated) = await RowAsync(db, tag);
        Assert.Equal(4321, output);
        Assert.False(estimated);
        Assert.Empty(Directory.Exists(spool) ? Directory.EnumerateFiles(spool, "usage-*.jsonl") : []);
    }

    [Fact]
    public async Task A_stream_longer_than_the_shutdown_timeout_is_cut_and_its_estimated_usage_is_stored_by_the_next_process()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-shutdown-cut-" + db);
        var tag = "cut-" + Guid.NewGuid().ToString("N");
        await using (var gateway = await GatewayProcess.StartAsync(Environment(db, spool, "2"), "shutdown-cut"))
        {
            using var stream = await OpenStreamAsync(gateway, tag, words: 20, delayMs: 1000, outputTokens: 4321);
            Assert.Equal("message_start", await stream.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            var clock = Stopwatch.StartNew();
            var exited = gateway.StopAsync(TimeSpan.FromSeconds(60));
            var events = await stream.RestAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.DoesNotContain("message_stop", events);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"the stream ran {clock.Elapsed.TotalSeconds:0} s after SIGTERM with a 2 s shutdown timeout");
            var exitCode = await exited.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exitCode == 0, $"the gateway ended with {exitCode}:\n{gateway.Output}");
        }

        // Stored by the stopping process, or spooled by it and replayed by the next one on the same folder: stored once, estimated.
        await using var next = await GatewayProcess.StartAsync(Environment(db, spool, "30"), "shutdown-cut-next");
        var deadline = Stopwatch.StartNew();
        while (await CountAsync(db, tag) == 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "the cut answer's usage never reached Postgres");
            await Task.Delay(200);
        }
        var (output, estimated) = await RowAsync(db, tag);
        Assert.True(estimated);
        Assert.InRange(output, 1, 4320);
        Assert.Equal(1, await CountAsync(db, tag));
        Assert.Equal(0, await next.StopAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Usage_spooled_by_a_process_stopped_while_postgres_was_down_is_stored_once_by_the_next_process_on_the_same_folder()
    {
        // A pod rescheduled onto its persistent volume: the new process has a new spool id, and takes over the old files.
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-respool-" + db);
        var environment = Environment(db, spool, "30");
        environment["USAGE_FLUSH_MS"] = "50";
        var tags = Enumerable.Range(0, 20).Select(i => $"respool-{i}-{Guid.NewGuid():N}").ToArray();
        await using (var first = await GatewayProcess.StartAsync(environment, "respool-first"))
        {
            // An enrolled device: its standing is in Redis, so admission does not need Postgres.
            string token;
            using (var enrolled = await first.Client.SendAsync(Http.Post("/bootstrap", $$"""{"device_id":"{{TestSecrets.DeviceId("respool")}}"}""")))
            {
                Assert.Equal(HttpStatusCode.OK, enrolled.StatusCode);
                using var json = JsonDocument.Parse(await enrolled.Content.ReadAsStringAsync());
                token = json.RootElement.GetProperty("wrapper_token").GetString()!;
            }
            await fx.Postgres.StopAsync();
            try
            {
                foreach (var tag in tags)
                {
                    using var response = await first.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-request-id", tag)));
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                }
                Assert.Equal(0, await first.StopAsync(TimeSpan.FromSeconds(60)));
            }
            finally
            {
                await fx.Postgres.StartAgainAsync();
            }
        }
        Assert.NotEmpty(Directory.EnumerateFiles(spool, "usage-*.jsonl"));
        Assert.Equal(0, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));

        await using var next = await GatewayProcess.StartAsync(environment, "respool-next");
        var clock = Stopwatch.StartNew();
        while (await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events") < tags.Length)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the spooled usage was not replayed by the next process");
            await Task.Delay(200);
        }
        Assert.Equal(0, await next.StopAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(tags.Length, await fx.ScalarAsync<long>(db, "SELECT count(DISTINCT correlation_id) FROM usage_events WHERE correlation_id = ANY(@tags)", ("tags", tags)));
        Assert.Equal(tags.Length, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));
        Assert.Empty(Directory.EnumerateFiles(spool, "usage-*.jsonl"));
    }

    [Fact]
    public async Task Readyz_says_stopping_from_the_moment_the_application_stops_while_liveness_stays_up()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["SHUTDOWN_TIMEOUT_SECONDS"] = "45");
        Assert.Equal(TimeSpan.FromSeconds(45), gateway.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout);
        using (var before = await gateway.Client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        // Only the signal: this host is started without the wait that would stop it, so it keeps answering.
        gateway.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();

        using var ready = await gateway.Client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
        var lifetime = json.RootElement.GetProperty("checks").GetProperty("lifetime");
        Assert.Equal("Unhealthy", lifetime.GetProperty("status").GetString());
        Assert.StartsWith("stopping", lifetime.GetProperty("description").GetString());
        using var live = await gateway.Client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("86401")]
    [InlineData("-5")]
    [InlineData("soon")]
    public void A_bad_shutdown_timeout_names_its_setting(string value)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "k", ["JWT_SECRET"] = TestSecrets.JwtSecret(), ["SHUTDOWN_TIMEOUT_SECONDS"] = value,
        }).Build();
        var error = Assert.Throws<GatewayConfigurationException>(() => GatewayOptions.Load(config));
        Assert.Equal("SHUTDOWN_TIMEOUT_SECONDS must be a number from 1 to 86400.", error.Message);
    }

    [Fact]
    public void The_shutdown_timeout_defaults_to_aspnet_cores_thirty_seconds()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "k", ["JWT_SECRET"] = TestSecrets.JwtSecret(),
        }).Build();
        Assert.Equal(TimeSpan.FromSeconds(30), GatewayOptions.Load(config).ShutdownTimeout);
    }

    private async Task<SseReader> OpenStreamAsync(RunningGateway gateway, string tag, int words, int delayMs, int outputTokens)
    {
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("shutdown"));
        var client = new HttpClient { BaseAddress = gateway.BaseUrl, Timeout = Timeout.InfiniteTimeSpan };
        using var request = Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers:
        [
            ("x-request-id", tag), ("x-sim-events", words.ToString()), ("x-sim-delay-ms", delayMs.ToString()),
            ("x-sim-output-tokens", outputTokens.ToString()),
        ]);
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return new SseReader(client, response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    /// <summary>True when a new connection to <paramref name="server"/> is refused, or gets anything but a 200 for <paramref name="path"/>.</summary>
    private static async Task<bool> RefusesNewWorkAsync(Uri server, string path)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(server.Host, server.Port).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        // It still accepts: a fresh connection (never a pooled one) must not be served as if nothing were happening.
        using var probe = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero }) { BaseAddress = server, Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            using var response = await probe.SendAsync(new HttpRequestMessage(path == "/readyz" ? HttpMethod.Get : HttpMethod.Post, path));
            return response.StatusCode is HttpStatusCode.ServiceUnavailable;
        }
        catch (HttpRequestException)
        {
            return true;
        }
    }

    private async Task<long> CountAsync(string db, string tag) =>
        await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE correlation_id = @c", ("c", tag));

    private async Task<(long Output, bool Estimated)> RowAsync(string db, string tag)
    {
        await using var connection = fx.Connect(db);
        await using var command = new NpgsqlCommand("SELECT output_tokens, output_estimated FROM usage_events WHERE correlation_id = @c", connection);
        command.Parameters.AddWithValue("c", tag);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync(), $"no usage row for {tag}");
        return (reader.GetInt64(0), reader.GetBoolean(1));
    }

    /// <summary>Reads a server-sent event stream one event name at a time.</summary>
    private sealed class SseReader(HttpClient client, HttpResponseMessage response, StreamReader reader) : IDisposable
    {
        /// <summary>The next event's name; null at the end of the stream or when the connection is cut.</summary>
        public async Task<string?> NextEventAsync()
        {
            try
            {
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (line.StartsWith("event: ", StringComparison.Ordinal))
                    {
                        return line["event: ".Length..];
                    }
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
            }
            return null;
        }

        /// <summary>The names of the events still to come, until the stream ends or is cut.</summary>
        public async Task<List<string>> RestAsync()
        {
            var events = new List<string>();
            while (await NextEventAsync() is { } name)
            {
                events.Add(name);
            }
            return events;
        }

        public void Dispose()
        {
            reader.Dispose();
            response.Dispose();
            client.Dispose();
        }
    }
}
