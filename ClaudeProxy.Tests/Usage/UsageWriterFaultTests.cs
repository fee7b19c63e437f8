using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace ClaudeProxy.Tests.Usage;

/// <summary>The usage writer against a real PostgreSQL that refuses rows, stops, and comes back: one bad row never stops it, nothing is lost.</summary>
public sealed class UsageWriterFaultTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string OperatorKey = "operator-key-0123456789-abcdefghij";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    private async Task<long> CountAsync(string db, IEnumerable<UsageEvent> events) =>
        await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE id = ANY(@ids)", ("ids", events.Select(e => e.Id).ToArray()));

    [Fact]
    public async Task A_row_postgres_refuses_is_dead_lettered_and_the_rest_of_its_batch_and_later_batches_are_stored()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var writer = gateway.Services.GetRequiredService<UsageWriter>();
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        using var metrics = new MetricCapture(gateway.Services);

        // A model string with a NUL character: Postgres text cannot hold it (22021). It bypasses request validation here.
        var good = Enumerable.Range(0, 20).Select(_ => TestEvents.Usage()).ToList();
        var bad = TestEvents.Usage(model: "claude\0evil");
        foreach (var e in good.Take(10).Append(bad).Concat(good.Skip(10)))
        {
            sink.Enqueue(e);
        }
        await writer.WaitForDeadLettersAsync(1).WaitAsync(Wait);
        await writer.WaitForStoredAsync(20).WaitAsync(Wait);
        Assert.Equal(20, await CountAsync(db, good));

        await using (var connection = fx.Connect(db))
        await using (var command = new NpgsqlCommand("SELECT event_id, source, reason, payload FROM usage_dead_letters", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal(bad.Id, reader.GetGuid(0));
            Assert.Equal("writer", reader.GetString(1));
            Assert.StartsWith("22021", reader.GetString(2));
            using var payload = JsonDocument.Parse(reader.GetString(3));
            Assert.Equal("claude\0evil", payload.RootElement.GetProperty("model").GetString());
            Assert.Equal(bad.Id, payload.RootElement.GetProperty("id").GetGuid());
            Assert.False(await reader.ReadAsync(), "exactly one dead letter");
        }

        // The writer is not stuck and does not think Postgres is down: the next events are stored, not spooled.
        var later = Enumerable.Range(0, 5).Select(_ => TestEvents.Usage()).ToList();
        later.ForEach(sink.Enqueue);
        await writer.WaitForStoredAsync(25).WaitAsync(Wait);
        Assert.Equal(5, await CountAsync(db, later));
        Assert.Equal(1, metrics.Sum("claudeproxy.usage.dead_letters", "source", "writer"));
        Assert.Equal(0, metrics.Sum("claudeproxy.usage.spooled"));

        using (var ready = await gateway.Client.GetAsync("/readyz"))
        {
            using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
            var check = json.RootElement.GetProperty("checks").GetProperty("usage-writer");
            Assert.Equal("Healthy", check.GetProperty("status").GetString());
            Assert.Contains("1 dead letters", check.GetProperty("description").GetString());
        }

        using var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", OperatorKey);
        using var overview = JsonDocument.Parse(await manage.GetStringAsync("/manage/v1/overview"));
        Assert.Equal(1, overview.RootElement.GetProperty("dead_letters").GetInt32());
        if (!OperatingSystem.IsWindows())
        {
            // The spool folder the gateway was given was made private at start.
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                File.GetUnixFileMode(gateway.Services.GetRequiredService<UsageSpool>().Directory));
        }
    }

    [Fact]
    public async Task A_refused_row_in_the_spool_is_dead_lettered_on_replay_and_the_events_around_it_are_stored()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var writer = gateway.Services.GetRequiredService<UsageWriter>();
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        var good = Enumerable.Range(0, 30).Select(_ => TestEvents.Usage()).ToList();
        var bad = TestEvents.Usage(model: "claude\0spooled");
        await fx.Postgres.StopAsync();
        try
        {
            foreach (var e in good.Take(15).Append(bad).Concat(good.Skip(15)))
            {
                sink.Enqueue(e);
            }
            // Wait until the batch is on disk: the writer has found Postgres down and spooled it.
            var spooled = Task.Run(async () =>
            {
                while (gateway.Services.GetRequiredService<UsageSpool>().PendingFiles == 0)
                {
                    await Task.Delay(20);
                }
            });
            await spooled.WaitAsync(Wait);
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
        }
        await writer.WaitForDeadLettersAsync(1).WaitAsync(Wait);
        await writer.WaitForStoredAsync(30).WaitAsync(Wait);
        Assert.Equal(30, await CountAsync(db, good));
        Assert.Equal(1L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_dead_letters WHERE event_id = @id AND source = 'replay'", ("id", bad.Id)));

        // Nothing stays behind in the spool, and the writer goes on storing.
        var later = TestEvents.Usage();
        sink.Enqueue(later);
        await writer.WaitForStoredAsync(31).WaitAsync(Wait);
        Assert.Equal(0, gateway.Services.GetRequiredService<UsageSpool>().PendingFiles);
    }

    [Fact]
    public async Task Events_of_requests_that_finish_while_the_host_stops_are_all_stored()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var settings = Settings(db, Path.Combine(Path.GetTempPath(), "claudeproxy-test-drain-" + db));
        var gateway = await GatewayHost.StartAsync(settings);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        var queued = Enumerable.Range(0, 3000).Select(_ => TestEvents.Usage()).ToList();
        // Requests still streaming when the host is told to stop: the server lets them finish, and their usage must be kept.
        var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage,
            bearer: token, headers: [("x-sim-delay-ms", "150"), ("x-request-id", $"drain-{db}-{i}")]), HttpCompletionOption.ResponseHeadersRead))).WaitAsync(Wait);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var bodies = responses.Select(r => r.Content.ReadAsStringAsync()).ToList();
        queued.ForEach(sink.Enqueue);
        await gateway.DisposeAsync().AsTask().WaitAsync(Wait);
        await Task.WhenAll(bodies).WaitAsync(Wait);
        Array.ForEach(responses, r => r.Dispose());

        Assert.Equal(3000, await CountAsync(db, queued));
        Assert.Equal(4L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE correlation_id LIKE @p", ("p", $"drain-{db}-%")));
    }

    [Fact]
    public async Task Events_enqueued_as_the_host_stops_with_postgres_down_are_spooled_and_stored_by_the_next_start()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-drain-down-" + db);
        var gateway = await GatewayHost.StartAsync(Settings(db, spool));
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        var queued = Enumerable.Range(0, 2000).Select(_ => TestEvents.Usage()).ToList();
        await fx.Postgres.StopAsync();
        try
        {
            queued.ForEach(sink.Enqueue);
            await gateway.DisposeAsync().AsTask().WaitAsync(Wait);
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
        }
        var next = await GatewayHost.StartAsync(Settings(db, spool));
        try
        {
            await next.Services.GetRequiredService<UsageWriter>().WaitForStoredAsync(2000).WaitAsync(Wait);
            Assert.Equal(2000, await CountAsync(db, queued));
        }
        finally
        {
            await next.DisposeAsync();
        }
    }

    [Fact]
    public async Task Events_in_flight_when_a_hung_postgres_outlasts_the_shutdown_deadline_are_spooled_not_lost()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-hung-" + db);
        var gateway = await GatewayHost.StartAsync(Settings(db, spool));
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        var folder = gateway.Services.GetRequiredService<UsageSpool>().Directory;
        var queued = Enumerable.Range(0, 500).Select(_ => TestEvents.Usage()).ToList();
        await fx.Postgres.FreezeAsync();
        try
        {
            // Postgres answers nothing: the batch in flight hangs past the host's 10 s shutdown deadline.
            queued.ForEach(sink.Enqueue);
            var started = System.Diagnostics.Stopwatch.StartNew();
            using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                await gateway.App.StopAsync(deadline.Token).WaitAsync(Wait);
            }
            // When the host has stopped the process may exit at once: every event must be on disk by then.
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(25), $"stopping took {started.Elapsed}");
            var onDisk = Directory.EnumerateFiles(folder, "usage-*.jsonl").SelectMany(File.ReadLines).Count(l => l.Contains("\"correlation_id\"", StringComparison.Ordinal));
            Assert.Equal(500, onDisk);
        }
        finally
        {
            await fx.Postgres.ThawAsync();
            await gateway.DisposeAsync();
        }
        var next = await GatewayHost.StartAsync(Settings(db, spool));
        try
        {
            await next.Services.GetRequiredService<UsageWriter>().WaitForStoredAsync(500).WaitAsync(Wait);
            Assert.Equal(500, await CountAsync(db, queued));
        }
        finally
        {
            await next.DisposeAsync();
        }
    }

    [Fact]
    public async Task Postgres_stopped_while_another_instance_shares_the_spool_loses_nothing_and_no_exception_escapes()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var spool = Path.Combine(Path.GetTempPath(), "claudeproxy-test-shared-" + db);
        var a = await fx.GatewayAsync(db, s => s["USAGE_SPOOL_DIR"] = spool);
        var b = await fx.GatewayAsync(db, s => s["USAGE_SPOOL_DIR"] = spool);
        var events = Enumerable.Range(0, 4000).Select(_ => TestEvents.Usage()).ToList();
        await fx.Postgres.StopAsync();
        try
        {
            // Both instances spool and retry replaying while the other appends, for several rounds.
            for (var round = 0; round < 8; round++)
            {
                foreach (var (e, i) in events.Skip(round * 500).Take(500).Select((e, i) => (e, i)))
                {
                    (i % 2 == 0 ? a : b).Services.GetRequiredService<IUsageSink>().Enqueue(e);
                }
                await Task.Delay(150);
            }
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
        }
        await Task.WhenAll(StackFixture.StoredAsync(a, 2000), StackFixture.StoredAsync(b, 2000));
        Assert.Equal(4000, await CountAsync(db, events));
        foreach (var gateway in new[] { a, b })
        {
            Assert.False(gateway.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested);
            Assert.DoesNotContain(gateway.Logs.Lines, l => l.Contains("BackgroundService failed", StringComparison.Ordinal) || l.Contains("IOException", StringComparison.Ordinal));
        }
    }

    private Dictionary<string, string?> Settings(string db, string spool)
    {
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        settings["REDIS_URL"] = fx.Redis.Url;
        settings["DATABASE_URL"] = fx.Postgres.Url(db);
        settings["USAGE_SPOOL_DIR"] = spool;
        settings["RATE_LIMIT_MAX"] = "100000";
        settings["USAGE_FLUSH_MS"] = "50";
        return settings;
    }
}
