using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using Npgsql;

namespace ClaudeProxy.Tests.Usage;

/// <summary>Usage through a real gateway into a real PostgreSQL: counted exactly, priced right, never lost.</summary>
public sealed class UsageRecordingTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static readonly (string, string)[] CacheUsage =
    [
        ("x-sim-input-tokens", "1200"), ("x-sim-output-tokens", "250"), ("x-sim-cache-5m", "100"), ("x-sim-cache-1h", "200"), ("x-sim-cache-read", "4000"),
    ];

    private static async Task<Dictionary<string, object?>> RowAsync(NpgsqlConnection connection, string correlationId)
    {
        await using var command = new NpgsqlCommand("SELECT * FROM usage_events WHERE correlation_id = @c", connection);
        command.Parameters.AddWithValue("c", correlationId);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync(), $"no usage row for {correlationId}");
        var row = new Dictionary<string, object?>();
        for (var i = 0; i < reader.FieldCount; i++)
        {
            row[reader.GetName(i)] = reader.IsDBNull(i) ? null : reader.GetValue(i);
        }
        Assert.False(await reader.ReadAsync(), "exactly one row per request");
        return row;
    }

    [Theory]
    [InlineData(true, 0)]
    [InlineData(true, 7)]
    [InlineData(false, 0)]
    [InlineData(false, 5)]
    public async Task Streamed_and_json_usage_match_the_upstream_exactly(bool stream, int split)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var device = TestSecrets.DeviceId();
        var token = await gateway.BootstrapAsync(device);
        var correlation = "usage-" + Guid.NewGuid().ToString("N");
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", stream ? Http.StreamMessage : Http.SmallMessage, bearer: token,
            headers: [.. CacheUsage, ("x-sim-web-search", "2"), ("x-sim-split", split.ToString()), ("x-request-id", correlation),
                ("x-claude-code-session-id", "session-77"), ("x-claude-code-agent-id", "agent-3")])))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync();
        }
        await StackFixture.StoredAsync(gateway, 1);
        await using var connection = fx.Connect(db);
        var row = await RowAsync(connection, correlation);
        Assert.Equal(device, row["device_id"]);
        Assert.Equal("claude-sonnet-4-5-20250929", row["model"]);
        Assert.Equal("messages", row["endpoint"]);
        Assert.Equal(200, row["status"]);
        Assert.Equal(stream, row["streamed"]);
        Assert.Equal(1200L, row["input_tokens"]);
        Assert.Equal(250L, row["output_tokens"]);
        Assert.Equal(100L, row["cache_write_5m_tokens"]);
        Assert.Equal(200L, row["cache_write_1h_tokens"]);
        Assert.Equal(4000L, row["cache_read_tokens"]);
        Assert.Equal(2L, row["web_search_requests"]);
        Assert.Equal("session-77", row["session_id"]);
        Assert.Equal("agent-3", row["agent_id"]);
        Assert.StartsWith("req_sim_", (string)row["upstream_request_id"]!);
        // By hand, Sonnet: 1200 x $3/M + 100 x $3.75/M + 200 x $6/M + 4000 x $0.30/M + 250 x $15/M + 2 searches x $0.01.
        Assert.Equal(0.0036m + 0.000375m + 0.0012m + 0.0012m + 0.00375m + 0.02m, (decimal)row["cost_usd"]!);
        Assert.False((bool)row["cancelled"]!);
        Assert.True((double)row["latency_ms"]! > 0);
        Assert.NotNull(row["ttfb_ms"]);

        var rollup = await fx.ScalarAsync<long>(db, "SELECT sum(requests)::bigint FROM usage_rollups WHERE granularity = 'h' AND device_id = @d", ("d", device));
        Assert.Equal(1, rollup);
        var daily = await fx.ScalarAsync<decimal>(db, "SELECT sum(cost_usd) FROM usage_rollups WHERE granularity = 'd' AND device_id = @d", ("d", device));
        Assert.Equal((decimal)row["cost_usd"]!, daily);
    }

    [Fact]
    public async Task Gzipped_json_answers_are_metered()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var correlation = "gzip-" + Guid.NewGuid().ToString("N");
        using var request = Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: [.. CacheUsage, ("x-sim-gzip", "1"), ("x-request-id", correlation)]);
        using var handler = new HttpClientHandler { AutomaticDecompression = DecompressionMethods.None };
        using var client = new HttpClient(handler) { BaseAddress = gateway.BaseUrl };
        using (var response = await client.SendAsync(request))
        {
            Assert.Equal("gzip", response.Content.Headers.ContentEncoding.Single());
        }
        await StackFixture.StoredAsync(gateway, 1);
        await using var connection = fx.Connect(db);
        var row = await RowAsync(connection, correlation);
        Assert.Equal(1200L, row["input_tokens"]);
        Assert.Equal(250L, row["output_tokens"]);
        Assert.Equal(4000L, row["cache_read_tokens"]);
    }

    [Fact]
    public async Task An_unknown_model_is_charged_at_the_highest_prices_marked_estimated_and_logged_once()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        for (var i = 0; i < 2; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-mystery-9","max_tokens":10,"messages":[]}""", bearer: token));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        await StackFixture.StoredAsync(gateway, 2);
        // 25 input and 12 output tokens at the price book's highest prices, $15/M and $75/M.
        Assert.Equal(2L, await fx.ScalarAsync<long>(db,
            "SELECT count(*) FROM usage_events WHERE model = 'claude-mystery-9' AND cost_usd = 0.001275 AND cost_estimated AND input_tokens = 25"));
        Assert.Single(gateway.Logs.Lines, l => l.Contains("claude-mystery-9") && l.Contains("no price"));
    }

    [Fact]
    public async Task Postgres_stopped_while_500_requests_run_loses_nothing_and_duplicates_nothing()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var ids = Enumerable.Range(0, 500).Select(i => $"loss-{i}-{Guid.NewGuid():N}").ToList();
        var sent = 0;
        var stopped = false;
        using var gate = new SemaphoreSlim(16);
        var tasks = ids.Select(async (id, i) =>
        {
            await gate.WaitAsync();
            try
            {
                using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-request-id", id)));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                await response.Content.ReadAsStringAsync();
            }
            finally
            {
                gate.Release();
            }
            if (Interlocked.Increment(ref sent) == 150)
            {
                stopped = true;
                await fx.Postgres.StopAsync();
            }
        }).ToList();
        await Task.WhenAll(tasks);
        Assert.True(stopped);
        using (var ready = await gateway.Client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Contains("Degraded", await ready.Content.ReadAsStringAsync());
        }

        await fx.Postgres.StartAgainAsync();
        await StackFixture.StoredAsync(gateway, 500);
        await using var connection = fx.Connect(db);
        await using var command = new NpgsqlCommand("SELECT correlation_id, count(*) FROM usage_events GROUP BY correlation_id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var counts = new Dictionary<string, long>();
        while (await reader.ReadAsync())
        {
            counts[reader.GetString(0)] = reader.GetInt64(1);
        }
        Assert.Equal(500, counts.Count);
        Assert.All(ids, id => Assert.Equal(1, counts.GetValueOrDefault(id)));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("spool"));
    }

    [Fact]
    public async Task A_capped_device_whose_spend_cannot_be_read_is_refused_cleanly_until_postgres_is_back()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["DEFAULT_SPEND_CAP"] = "5");
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        await fx.Postgres.StopAsync();
        try
        {
            using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            var (_, message) = await Http.AssertErrorAsync(refused, 503, "api_error");
            Assert.Contains("spend", message);
            Assert.Contains(gateway.Logs.Lines, l => l.Contains("could not be read from Postgres"));
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
        }

        using var admitted = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
        await StackFixture.StoredAsync(gateway, 1);
        Assert.Equal(1L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));
    }

    [Fact]
    public async Task Two_instances_never_spend_past_the_cap_under_concurrency()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var a = await fx.GatewayAsync(db);
        var b = await fx.GatewayAsync(db);
        var device = TestSecrets.DeviceId();
        // Haiku 4.5: 30 input x $1/M + 1000 output x $5/M = $0.00503 a request; the reservation is a little more. The cap fits 10.
        const decimal cap = 0.0505m;
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = cap, ["rate_limit"] = 1000 });
        const string body = """{"model":"claude-haiku-4-5-20251001","max_tokens":1000,"messages":[{"role":"user","content":"Hi"}]}""";
        var results = await Task.WhenAll(Enumerable.Range(0, 40).Select(async i =>
        {
            using var response = await (i % 2 == 0 ? a : b).Client.SendAsync(Http.Post("/v1/messages", body, bearer: token,
                headers: [("x-sim-input-tokens", "30"), ("x-sim-output-tokens", "1000")]));
            var text = await response.Content.ReadAsStringAsync();
            return ((int)response.StatusCode, text, response.Headers.Contains("retry-after"));
        }));
        Assert.Equal(10, results.Count(r => r.Item1 == 200));
        var viaA = results.Where((r, i) => r.Item1 == 200 && i % 2 == 0).Count();
        var refused = results.Where(r => r.Item1 != 200).ToList();
        Assert.All(refused, r =>
        {
            Assert.Equal(429, r.Item1);
            Assert.Contains("spend cap", r.Item2);
            Assert.Contains("resets at", r.Item2);
            Assert.False(r.Item3, "a spend cap refusal has no retry-after");
        });

        await Task.WhenAll(StackFixture.StoredAsync(a, viaA), StackFixture.StoredAsync(b, 10 - viaA));
        var spent = await fx.ScalarAsync<decimal>(db, "SELECT sum(cost_usd) FROM usage_events WHERE device_id = @d", ("d", device));
        Assert.True(spent <= cap, $"spent {spent} over the cap {cap}");
        Assert.Equal(10 * 0.00503m, spent);
    }

    [Fact]
    public async Task A_client_that_leaves_mid_stream_cancels_upstream_and_its_partial_usage_is_recorded()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var correlation = "leave-" + Guid.NewGuid().ToString("N");
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token,
            headers: [("x-request-id", correlation), ("x-test-marker", correlation), ("x-sim-hang-after", "4")]), HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var first = await Http.ReadEventAsync(reader).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.StartsWith("event: message_start", first);
        }
        var seen = fx.Simulator.State.Find("x-test-marker", correlation)!;
        Assert.True(await seen.Aborted.Task.WaitAsync(TimeSpan.FromSeconds(20)));
        await StackFixture.StoredAsync(gateway, 1);
        await using var connection = fx.Connect(db);
        var row = await RowAsync(connection, correlation);
        Assert.True((bool)row["cancelled"]!);
        Assert.Equal(25L, row["input_tokens"]);
        // One delta, "Hello", had been streamed: 5 bytes at three bytes a token, estimated.
        Assert.Equal(2L, row["output_tokens"]);
        Assert.True((bool)row["output_estimated"]!);
        Assert.True((decimal)row["cost_usd"]! > 0);
    }

    [Fact]
    public async Task Device_endpoints_show_one_devices_data_only()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var alice = await gateway.BootstrapAsync("alice-" + Guid.NewGuid().ToString("N")[..8]);
        var bob = await gateway.BootstrapAsync("bob-" + Guid.NewGuid().ToString("N")[..8]);
        for (var i = 0; i < 3; i++)
        {
            using var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: alice));
        }
        using (var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: alice))) { }
        using (var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: bob))) { }
        await StackFixture.StoredAsync(gateway, 5);

        using var usage = await gateway.Client.SendAsync(Http.Get("/admin/usage?page_size=2", bearer: alice));
        using var page = JsonDocument.Parse(await usage.Content.ReadAsStringAsync());
        Assert.Equal(4, page.RootElement.GetProperty("total").GetInt32());
        Assert.Equal(2, page.RootElement.GetProperty("data").GetArrayLength());

        Assert.Equal(1, await TotalAsync("/admin/usage?model=claude-haiku-4-5", alice));
        Assert.Equal(0, await TotalAsync("/admin/usage?from=2099-01-01T00:00:00Z", alice));
        Assert.Equal(1, await TotalAsync("/admin/usage", bob));

        using var stats = await gateway.Client.SendAsync(Http.Get("/admin/stats", bearer: alice));
        using var json = JsonDocument.Parse(await stats.Content.ReadAsStringAsync());
        var byModel = json.RootElement.GetProperty("by_model").EnumerateArray().ToDictionary(m => m.GetProperty("key").GetString()!, m => m.GetProperty("requests").GetInt64());
        Assert.Equal(3, byModel["claude-sonnet-4-5-20250929"]);
        Assert.Equal(1, byModel["claude-haiku-4-5"]);
        Assert.Equal(4, json.RootElement.GetProperty("by_day").EnumerateArray().Sum(d => d.GetProperty("requests").GetInt64()));
        Assert.True(json.RootElement.GetProperty("spent_this_period_usd").GetDecimal() > 0);

        using var bad = await gateway.Client.SendAsync(Http.Get("/admin/usage?from=yesterday", bearer: alice));
        await Http.AssertErrorAsync(bad, 400, "invalid_request_error");

        async Task<int> TotalAsync(string path, string token)
        {
            using var response = await gateway.Client.SendAsync(Http.Get(path, bearer: token));
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return body.RootElement.GetProperty("total").GetInt32();
        }
    }
}
