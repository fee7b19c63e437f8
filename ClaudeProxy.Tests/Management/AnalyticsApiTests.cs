using System.Net;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ClaudeProxy.Tests.Management;

/// <summary>
/// The analytics pages against usage produced through the gateway (or written to its usage writer where the time of an
/// event matters): figures checked against a hand computation from the published prices, never against the gateway's
/// own arithmetic.
/// </summary>
public sealed class AnalyticsApiTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string Sonnet = "claude-sonnet-4-5-20250929";
    private const string Haiku = "claude-haiku-4-5-20251001";
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    // Published prices, USD per million tokens: input, 5-minute write, 1-hour write, cache read, output.
    private static readonly (decimal In, decimal W5, decimal W1, decimal Read, decimal Out) SonnetPrice = (3m, 3.75m, 6m, 0.30m, 15m);
    private static readonly (decimal In, decimal W5, decimal W1, decimal Read, decimal Out) HaikuPrice = (1m, 1.25m, 2m, 0.10m, 5m);

    private Task<GatewayHost> GatewayAsync(string db, Action<Dictionary<string, string?>>? configure = null) =>
        fx.GatewayAsync(db, s =>
        {
            (s["ADMIN_API_KEY"], s["MAX_CONCURRENT_REQUESTS_PER_DEVICE"]) = (TestSecrets.OperatorKey, "100");
            configure?.Invoke(s);
        });

    private static HttpClient Manage(GatewayHost gateway)
    {
        var client = new HttpClient { BaseAddress = gateway.ManagementUrl, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        return client;
    }

    private static async Task<T> GetAsync<T>(GatewayHost gateway, string path)
    {
        using var manage = Manage(gateway);
        using var response = await manage.GetAsync(path).WaitAsync(TimeSpan.FromSeconds(60));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, Json)!;
    }

    private string Person(string userId, IDictionary<string, object>? extra = null)
    {
        var claims = new Dictionary<string, object> { ["user_id"] = userId, ["email"] = userId + "@example.com" };
        foreach (var (k, v) in extra ?? new Dictionary<string, object>())
        {
            claims[k] = v;
        }
        return TokenForge.Make(fx.JwtSecret, deviceId: "@" + userId, claims: claims);
    }

    private static string UserId() => "usr_" + Guid.NewGuid().ToString("N")[..16];

    private static string Message(string model) => $$"""{"model":"{{model}}","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}""";

    private static async Task<HttpStatusCode> SendAsync(GatewayHost gateway, string token, string model, params (string, string)[] headers)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Message(model), bearer: token, headers: headers)).WaitAsync(TimeSpan.FromSeconds(60));
        await response.Content.ReadAsStringAsync();
        return response.StatusCode;
    }

    private static (string, string)[] Usage(long input, long output, long w5, long w1, long read) =>
        [("x-sim-input-tokens", input.ToString()), ("x-sim-output-tokens", output.ToString()), ("x-sim-cache-5m", w5.ToString()),
            ("x-sim-cache-1h", w1.ToString()), ("x-sim-cache-read", read.ToString())];

    private static decimal Cost((decimal In, decimal W5, decimal W1, decimal Read, decimal Out) p, long input, long output, long w5, long w1, long read) =>
        (input * p.In + output * p.Out + w5 * p.W5 + w1 * p.W1 + read * p.Read) / 1_000_000m;

    [Fact]
    public async Task Cache_savings_by_model_device_user_session_and_agent_match_a_hand_computation()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var user = UserId();
        var token = Person(user);
        var session = "sess-" + Guid.NewGuid().ToString("N");
        // Two Sonnet turns of the main conversation, one Haiku subagent turn.
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet, [.. Usage(1200, 250, 100, 200, 4000), ("x-claude-code-session-id", session)]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet, [.. Usage(1200, 250, 100, 200, 4000), ("x-claude-code-session-id", session)]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Haiku,
            [.. Usage(500, 40, 1000, 0, 20000), ("x-claude-code-session-id", session), ("x-claude-code-agent-id", "agent-a")]));
        await StackFixture.StoredAsync(gateway, 3);

        // Saved: reads x (input - read price); extra: 5m writes x (5m - input) + 1h writes x (1h - input).
        var sonnetSaved = 8000 * (SonnetPrice.In - SonnetPrice.Read) / 1_000_000m;
        var sonnetExtra = (200 * (SonnetPrice.W5 - SonnetPrice.In) + 400 * (SonnetPrice.W1 - SonnetPrice.In)) / 1_000_000m;
        var haikuSaved = 20000 * (HaikuPrice.In - HaikuPrice.Read) / 1_000_000m;
        var haikuExtra = 1000 * (HaikuPrice.W5 - HaikuPrice.In) / 1_000_000m;
        Assert.Equal(0.0216m, sonnetSaved);
        Assert.Equal(0.00135m, sonnetExtra);
        var sonnetCost = 2 * Cost(SonnetPrice, 1200, 250, 100, 200, 4000);
        var haikuCost = Cost(HaikuPrice, 500, 40, 1000, 0, 20000);

        var byModel = await GetAsync<CacheAnalytics>(gateway, "/manage/v1/analytics/cache?by=model");
        Assert.Equal("model", byModel.By);
        var sonnet = Assert.Single(byModel.Rows, r => r.Key == Sonnet);
        Assert.Equal((2L, 2400L, 200L, 400L, 8000L), (sonnet.Requests, sonnet.InputTokens, sonnet.CacheWrite5mTokens, sonnet.CacheWrite1hTokens, sonnet.CacheReadTokens));
        Assert.Equal(sonnetSaved, sonnet.SavedUsd);
        Assert.Equal(sonnetExtra, sonnet.WriteExtraUsd);
        Assert.Equal(sonnetSaved - sonnetExtra, sonnet.NetSavedUsd);
        Assert.Equal(sonnetCost, sonnet.CostUsd);
        Assert.Equal(8000.0 / (2400 + 200 + 400 + 8000), sonnet.HitRatio, 12);
        var haiku = Assert.Single(byModel.Rows, r => r.Key == Haiku);
        Assert.Equal(haikuSaved, haiku.SavedUsd);
        Assert.Equal(haikuExtra, haiku.WriteExtraUsd);
        Assert.Equal(20000.0 / (500 + 1000 + 20000), haiku.HitRatio, 12);
        Assert.Equal(haikuSaved + sonnetSaved - haikuExtra - sonnetExtra, byModel.Total.NetSavedUsd);
        Assert.Equal(3, byModel.Total.Requests);
        // Ordered by what caching saved net: Sonnet saved 0.02025, Haiku 0.01775.
        Assert.Equal([Sonnet, Haiku], byModel.Rows.Select(r => r.Key));

        // The device and the user sum both models, each priced at its own model's prices.
        foreach (var (by, key) in new[] { ("device", "@" + user), ("user", user), ("session", session) })
        {
            var page = await GetAsync<CacheAnalytics>(gateway, $"/manage/v1/analytics/cache?by={by}");
            var row = Assert.Single(page.Rows);
            Assert.Equal(key, row.Key);
            Assert.Equal(sonnetSaved + haikuSaved, row.SavedUsd);
            Assert.Equal(sonnetExtra + haikuExtra, row.WriteExtraUsd);
            Assert.Equal(sonnetCost + haikuCost, row.CostUsd);
        }
        var agents = await GetAsync<CacheAnalytics>(gateway, $"/manage/v1/analytics/cache?by=agent&session={session}");
        Assert.Equal(["", "agent-a"], agents.Rows.Select(r => r.Key).Order());
        Assert.Equal(haikuSaved, agents.Rows.Single(r => r.Key == "agent-a").SavedUsd);
        Assert.Equal(sonnetSaved, agents.Rows.Single(r => r.Key == "").SavedUsd);
        // A range before the requests shows nothing.
        var before = await GetAsync<CacheAnalytics>(gateway, "/manage/v1/analytics/cache?by=model&from=2020-01-01&to=2020-02-01");
        Assert.Empty(before.Rows);
        Assert.Equal(0, before.Total.Requests);
    }

    [Fact]
    public async Task Spend_by_day_week_and_month_per_model_user_group_and_device_with_the_month_end_projection()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var now = DateTimeOffset.Parse("2026-11-20T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture);
        var clock = new FakeTimeProvider(now);
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        settings["DATABASE_URL"] = fx.Postgres.Url(db);
        settings["REDIS_URL"] = fx.Redis.Url;
        settings["USAGE_FLUSH_MS"] = "50";
        settings["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
        settings["USAGE_SPOOL_DIR"] = Path.Combine(Path.GetTempPath(), "claudeproxy-test-spool-" + db);
        await using var gateway = await GatewayHost.StartAsync(settings, b => b.Services.AddKeyedSingleton<TimeProvider>(AnalyticsQueries.TimeProviderKey, clock));

        await fx.ExecuteAsync(db, "INSERT INTO users (user_id, issuer, subject, email, name, groups, status, first_seen, last_seen) " +
            "VALUES ('usr_aaaaaaaaaaaaaaaa', 'https://idp', 'a', 'ann@example.com', 'Ann', '{}', 'active', now(), now())");
        var teamA = await GroupAsync(gateway, "team-a-" + Guid.NewGuid().ToString("N")[..6]);
        var teamB = await GroupAsync(gateway, "team-b-" + Guid.NewGuid().ToString("N")[..6]);
        UsageEvent At(string time, string model, string device, string user, decimal cost, string? groups) => TestEvents.Usage(model, device) with
        {
            Time = DateTimeOffset.Parse(time, System.Globalization.CultureInfo.InvariantCulture), UserId = user, CostUsd = cost, GroupIds = groups,
        };
        var events = new[]
        {
            At("2026-10-31T23:00:00Z", Sonnet, "dev-b", "usr_bbbbbbbbbbbbbbbb", 8.00m, null),
            At("2026-11-02T10:00:00Z", Sonnet, "dev-a", "usr_aaaaaaaaaaaaaaaa", 1.00m, teamA),
            At("2026-11-03T10:00:00Z", Haiku, "dev-b", "usr_bbbbbbbbbbbbbbbb", 2.00m, $"{teamA} {teamB}"),
            At("2026-11-10T10:00:00Z", Sonnet, "dev-a", "usr_aaaaaaaaaaaaaaaa", 4.00m, null),
            At("2026-11-10T11:00:00Z", Sonnet, "dev-a", "usr_aaaaaaaaaaaaaaaa", 0.50m, null),
        };
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        foreach (var e in events)
        {
            sink.Enqueue(e);
        }
        await StackFixture.StoredAsync(gateway, events.Length);

        const string range = "from=2026-10-01&to=2026-11-21";
        var byDay = await GetAsync<SpendAnalytics>(gateway, $"/manage/v1/analytics/spend?by=model&period=day&{range}");
        Assert.Equal(
            [("2026-10-31", Sonnet, 1L, 8.00m), ("2026-11-02", Sonnet, 1L, 1.00m), ("2026-11-03", Haiku, 1L, 2.00m), ("2026-11-10", Sonnet, 2L, 4.50m)],
            byDay.Points.Select(p => (p.Bucket.ToString("yyyy-MM-dd"), p.Key, p.Requests, p.CostUsd)));
        Assert.Equal([(Sonnet, 13.50m), (Haiku, 2.00m)], byDay.Totals.Select(t => (t.Key, t.CostUsd)));

        // Weeks start on Monday: Oct 26, Nov 2 and Nov 9.
        var byWeek = await GetAsync<SpendAnalytics>(gateway, $"/manage/v1/analytics/spend?by=device&period=week&{range}");
        Assert.Equal([("2026-10-26", "dev-b", 8.00m), ("2026-11-02", "dev-a", 1.00m), ("2026-11-02", "dev-b", 2.00m), ("2026-11-09", "dev-a", 4.50m)],
            byWeek.Points.Select(p => (p.Bucket.ToString("yyyy-MM-dd"), p.Key, p.CostUsd)));

        var byMonth = await GetAsync<SpendAnalytics>(gateway, $"/manage/v1/analytics/spend?by=user&period=month&{range}");
        Assert.Equal([("2026-10-01", "usr_bbbbbbbbbbbbbbbb", 8.00m), ("2026-11-01", "usr_aaaaaaaaaaaaaaaa", 5.50m), ("2026-11-01", "usr_bbbbbbbbbbbbbbbb", 2.00m)],
            byMonth.Points.Select(p => (p.Bucket.ToString("yyyy-MM-dd"), p.Key, p.CostUsd)));
        Assert.Equal("ann@example.com", byMonth.Totals.Single(t => t.Key == "usr_aaaaaaaaaaaaaaaa").Label);
        Assert.Null(byMonth.Totals.Single(t => t.Key == "usr_bbbbbbbbbbbbbbbb").Label);

        // A request admitted under two groups counts in both.
        var byGroup = await GetAsync<SpendAnalytics>(gateway, $"/manage/v1/analytics/spend?by=group&period=month&{range}");
        Assert.Equal([(teamA, 3.00m, 2L), (teamB, 2.00m, 1L)], byGroup.Totals.Select(t => (t.Key, t.CostUsd, t.Requests)));
        Assert.StartsWith("team-a-", byGroup.Totals[0].Label);

        // November so far: 7.50 USD in 19.5 days; at that rate, 30 days.
        var projection = byDay.Projection;
        Assert.Equal(DateTimeOffset.Parse("2026-11-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture), projection.MonthStart);
        Assert.Equal(DateTimeOffset.Parse("2026-12-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture), projection.MonthEnd);
        Assert.Equal(7.50m, projection.SpentThisMonth);
        Assert.Equal(Math.Round(7.50m / 19.5m, 6), projection.DailyRate);
        Assert.Equal(Math.Round(7.50m / 19.5m * 30, 6), projection.ProjectedMonthEnd);

        // limit keeps the points of the costliest keys only; the totals keep every key.
        var top = await GetAsync<SpendAnalytics>(gateway, $"/manage/v1/analytics/spend?by=model&period=month&{range}&limit=1");
        Assert.All(top.Points, p => Assert.Equal(Sonnet, p.Key));
        Assert.Equal(2, top.Totals.Count);
    }

    private static async Task<string> GroupAsync(GatewayHost gateway, string name)
    {
        using var manage = Manage(gateway);
        using var created = await manage.PostAsync("/manage/v1/groups",
            new StringContent(JsonSerializer.Serialize(new { name, source = "manual" }), System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var json = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("group_id").GetString()!;
    }

    [Fact]
    public async Task A_session_with_two_subagents_one_started_by_the_other_comes_back_as_a_tree_and_top_sessions_are_ordered_by_cost()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var user = UserId();
        var token = Person(user);
        var session = "sess-" + Guid.NewGuid().ToString("N");
        var cheap = "sess-" + Guid.NewGuid().ToString("N");
        (string, string) S(string id) => ("x-claude-code-session-id", id);
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet, [.. Usage(1000, 100, 0, 0, 0), S(session)]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Haiku, [.. Usage(300, 30, 0, 0, 2000), S(session), ("x-claude-code-agent-id", "explore-1")]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Haiku,
            [.. Usage(200, 20, 0, 0, 0), S(session), ("x-claude-code-agent-id", "explore-2"), ("x-claude-code-parent-agent-id", "explore-1")]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Haiku,
            [.. Usage(200, 20, 0, 0, 0), S(session), ("x-claude-code-agent-id", "explore-2"), ("x-claude-code-parent-agent-id", "explore-1")]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet, [.. Usage(1000, 100, 0, 0, 0), S(session)]));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Haiku, [.. Usage(10, 1, 0, 0, 0), S(cheap)]));
        await StackFixture.StoredAsync(gateway, 6);

        var main = 2 * Cost(SonnetPrice, 1000, 100, 0, 0, 0);
        var first = Cost(HaikuPrice, 300, 30, 0, 0, 2000);
        var second = 2 * Cost(HaikuPrice, 200, 20, 0, 0, 0);
        var tree = await GetAsync<SessionTree>(gateway, $"/manage/v1/analytics/sessions/{session}");
        Assert.Equal(session, tree.Session.SessionId);
        Assert.Equal("@" + user, tree.Session.DeviceId);
        Assert.Equal(user + "@example.com", tree.Session.UserEmail);
        Assert.Equal(5, tree.Session.Requests);
        Assert.Equal(2, tree.Session.Subagents);
        Assert.Equal(main + first + second, tree.Session.CostUsd);
        Assert.Equal(2000 * (HaikuPrice.In - HaikuPrice.Read) / 1_000_000m, tree.Session.SavedUsd);
        Assert.Null(tree.Root.AgentId);
        Assert.Equal((2L, main), (tree.Root.Requests, tree.Root.CostUsd));
        var explore1 = Assert.Single(tree.Root.Children);
        Assert.Equal(("explore-1", 1L, first), (explore1.AgentId, explore1.Requests, explore1.CostUsd));
        var explore2 = Assert.Single(explore1.Children);
        Assert.Equal(("explore-2", "explore-1", 2L, second), (explore2.AgentId, explore2.ParentAgentId, explore2.Requests, explore2.CostUsd));
        Assert.Empty(explore2.Children);

        // The session lasts from when its first request was sent to when its last answer ended.
        await using (var connection = fx.Connect(db))
        {
            await using var command = new Npgsql.NpgsqlCommand(
                "SELECT min(time - latency_ms * interval '1 millisecond'), max(time) FROM usage_events WHERE session_id = @s", connection);
            command.Parameters.AddWithValue("s", session);
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            var (start, end) = (reader.GetFieldValue<DateTimeOffset>(0), reader.GetFieldValue<DateTimeOffset>(1));
            Assert.Equal(start, tree.Session.FirstSeen);
            Assert.Equal(end, tree.Session.LastSeen);
            Assert.Equal((end - start).TotalSeconds, tree.Session.DurationSeconds, 6);
        }

        var topSessions = await GetAsync<List<SessionSummary>>(gateway, "/manage/v1/analytics/sessions/top?days=7&limit=10");
        Assert.Equal([session, cheap], topSessions.Select(s => s.SessionId));
        Assert.Equal(tree.Session, topSessions[0]);
        Assert.Equal([session], (await GetAsync<List<SessionSummary>>(gateway, "/manage/v1/analytics/sessions/top?limit=1")).Select(s => s.SessionId));
    }

    [Fact]
    public async Task A_hostile_tree_of_subagents_cycles_and_a_deep_chain_still_answers()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var session = "sess-" + Guid.NewGuid().ToString("N");
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        UsageEvent Agent(string? agent, string? parent) => TestEvents.Usage() with { SessionId = session, AgentId = agent, ParentAgentId = parent };
        var events = new List<UsageEvent> { Agent("loop-a", "loop-b"), Agent("loop-b", "loop-a"), Agent("self", "self") };
        for (var i = 0; i < 60; i++)
        {
            events.Add(Agent($"chain-{i}", i == 0 ? null : $"chain-{i - 1}"));
        }
        foreach (var e in events)
        {
            sink.Enqueue(e);
        }
        await StackFixture.StoredAsync(gateway, events.Count);

        var tree = await GetAsync<SessionTree>(gateway, $"/manage/v1/analytics/sessions/{session}");
        Assert.Equal(events.Count, tree.Session.Subagents);
        var seen = new List<string>();
        var depth = 0;
        void Walk(AgentNode node, int d)
        {
            depth = Math.Max(depth, d);
            foreach (var child in node.Children)
            {
                seen.Add(child.AgentId!);
                Walk(child, d + 1);
            }
        }
        Walk(tree.Root, 0);
        Assert.Equal(events.Select(e => e.AgentId!).Order(), seen.Order());
        Assert.InRange(depth, 2, AnalyticsQueries.MaxTreeDepth);
    }

    [Fact]
    public async Task Upstream_errors_and_the_gateways_refusals_are_counted_by_reason_against_every_request()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var token = Person(UserId());
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, token, Sonnet));
        Assert.Equal(HttpStatusCode.TooManyRequests, await SendAsync(gateway, token, Sonnet, ("x-sim-status", "429")));
        Assert.Equal((HttpStatusCode)529, await SendAsync(gateway, token, Sonnet, ("x-sim-status", "529")));
        // The gateway's own refusals record no usage event.
        var limited = Person(UserId(), new Dictionary<string, object> { ["rate_limit"] = 1 });
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, limited, Sonnet));
        Assert.Equal(HttpStatusCode.TooManyRequests, await SendAsync(gateway, limited, Sonnet));
        Assert.Equal(HttpStatusCode.TooManyRequests, await SendAsync(gateway, limited, Sonnet));
        var capped = Person(UserId(), new Dictionary<string, object> { ["spend_cap"] = 0.000001 });
        Assert.Equal(HttpStatusCode.TooManyRequests, await SendAsync(gateway, capped, Sonnet));
        var haikuOnly = Person(UserId(), new Dictionary<string, object> { ["models"] = new[] { "claude-haiku-*" } });
        Assert.Equal(HttpStatusCode.Forbidden, await SendAsync(gateway, haikuOnly, Sonnet));
        await StackFixture.StoredAsync(gateway, 5);
        Assert.True(await gateway.Services.GetRequiredService<RefusalRollupWriter>().FlushAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));

        var errors = await GetAsync<ErrorAnalytics>(gateway, "/manage/v1/analytics/errors");
        Assert.Equal(9, errors.Requests);
        var reasons = errors.Reasons.ToDictionary(r => r.Reason, r => r.Count);
        Assert.Equal(new Dictionary<string, long>
        {
            ["gateway_rate_limit"] = 2, ["gateway_spend_cap"] = 1, ["gateway_model"] = 1,
            ["upstream_429_rate_limit_error"] = 1, ["upstream_529_overloaded_error"] = 1,
        }, reasons);
        Assert.Equal(2.0 / 9, errors.Reasons.Single(r => r.Reason == "gateway_rate_limit").Rate, 12);
        Assert.Equal(6, errors.Series.Sum(p => p.Count));
        Assert.Equal(5, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));
    }

    [Fact]
    public async Task Time_to_first_token_percentiles_are_within_the_stated_bound()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var random = new Random(7);
        var sonnet = Enumerable.Range(0, 400).Select(_ => Math.Round(200 + random.NextDouble() * 1800, 3)).ToList();
        var haiku = Enumerable.Range(0, 50).Select(i => i < 45 ? 90.0 + i : 5000.0 + i).ToList();
        var events = sonnet.Select(ms => TestEvents.Usage(Sonnet) with { TimeToFirstByteMs = ms })
            .Concat(haiku.Select(ms => TestEvents.Usage(Haiku) with { TimeToFirstByteMs = ms }))
            // Neither an error nor a token count nor an answer without a byte is a time to first token.
            .Append(TestEvents.Usage(Haiku) with { TimeToFirstByteMs = 1, Status = 529 })
            .Append(TestEvents.Usage(Haiku) with { TimeToFirstByteMs = 1, Endpoint = "count_tokens" })
            .Append(TestEvents.Usage(Haiku) with { TimeToFirstByteMs = null })
            .ToList();
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        events.ForEach(sink.Enqueue);
        await StackFixture.StoredAsync(gateway, events.Count);

        var latency = await GetAsync<LatencyAnalytics>(gateway, "/manage/v1/analytics/latency");
        foreach (var (model, values) in new[] { (Sonnet, sonnet), (Haiku, haiku) })
        {
            var row = latency.Models.Single(m => m.Model == model);
            Assert.Equal(values.Count, row.Requests);
            var sorted = values.Order().ToList();
            double NearestRank(double q) => sorted[(int)Math.Ceiling(q * sorted.Count) - 1];
            Assert.InRange(row.TtftP50Ms!.Value, NearestRank(0.5) / 1.0906, NearestRank(0.5) * 1.0906);
            Assert.InRange(row.TtftP95Ms!.Value, NearestRank(0.95) / 1.0906, NearestRank(0.95) * 1.0906);
        }
    }

    [Fact]
    public async Task Replaying_a_batch_with_the_same_event_ids_counts_nothing_twice()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var group = await GroupAsync(gateway, "replay-" + Guid.NewGuid().ToString("N")[..6]);
        var batch = Enumerable.Range(0, 20).Select(i => TestEvents.Usage(i % 2 == 0 ? Sonnet : Haiku) with
        {
            UserId = "usr_replayreplayrepl", GroupIds = group, SessionId = "sess-replay", AgentId = i % 3 == 0 ? null : "agent-" + (i % 3),
            CacheReadTokens = 100, CacheWrite5mTokens = 10, TimeToFirstByteMs = 50 + i, CostUsd = 0.01m,
        }).ToList();
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        batch.ForEach(sink.Enqueue);
        await StackFixture.StoredAsync(gateway, 20);
        var once = await TotalsAsync(db);
        var cacheOnce = await GetAsync<CacheAnalytics>(gateway, "/manage/v1/analytics/cache?by=group");
        batch.ForEach(sink.Enqueue);
        await StackFixture.StoredAsync(gateway, 40);

        Assert.Equal(once, await TotalsAsync(db));
        Assert.Equal("20 0.2000000000", once[0]);
        Assert.All(once, t => Assert.StartsWith("20 ", t));
        var cacheTwice = await GetAsync<CacheAnalytics>(gateway, "/manage/v1/analytics/cache?by=group");
        Assert.Equal(cacheOnce.Total, cacheTwice.Total);
        Assert.Equal(20, cacheTwice.Total.Requests);
    }

    /// <summary>Requests and cost in every rollup, as "requests cost" lines (the TTFT histogram has no cost).</summary>
    private async Task<List<string>> TotalsAsync(string db)
    {
        var totals = new List<string>();
        var tables = new[] { "h", "d", "w", "m" }.Select(g => $"usage_rollups WHERE granularity = '{g}'")
            .Concat(new[] { "d", "w", "m" }.Select(g => $"user_rollups WHERE granularity = '{g}'"))
            .Concat(["group_rollups", "model_rollups", "session_rollups"]);
        foreach (var table in tables)
        {
            totals.Add(await fx.ScalarAsync<string>(db, $"SELECT sum(requests) || ' ' || sum(cost_usd) FROM {table}"));
        }
        totals.Add(await fx.ScalarAsync<string>(db, "SELECT sum(requests) || ' -' FROM ttft_rollups"));
        return totals;
    }

    [Theory]
    [InlineData("/manage/v1/analytics/cache?by=nothing")]
    [InlineData("/manage/v1/analytics/cache?by=model&by=user")]
    [InlineData("/manage/v1/analytics/cache?by=model&session=abc")]
    [InlineData("/manage/v1/analytics/cache?by=session&limit=0")]
    [InlineData("/manage/v1/analytics/cache?by=session&limit=99999999999")]
    [InlineData("/manage/v1/analytics/cache?from=2026-11-20&to=2026-11-01")]
    [InlineData("/manage/v1/analytics/cache?from=2026-11-20&to=2026-11-20")]
    [InlineData("/manage/v1/analytics/cache?from=yesterday")]
    [InlineData("/manage/v1/analytics/cache?from=2026-13-45")]
    [InlineData("/manage/v1/analytics/cache?from=0001-01-01&to=0001-01-02")]
    [InlineData("/manage/v1/analytics/cache?from=9999-12-30&to=9999-12-31T23:59:59Z")]
    [InlineData("/manage/v1/analytics/cache?from=2024-01-01&to=2026-01-01")]
    [InlineData("/manage/v1/analytics/cache?by=session&from=2026-09-01&to=2026-11-01")]
    [InlineData("/manage/v1/analytics/cache?by=agent")]
    [InlineData("/manage/v1/analytics/spend?by=session")]
    [InlineData("/manage/v1/analytics/spend?period=year")]
    [InlineData("/manage/v1/analytics/spend?period=")]
    [InlineData("/manage/v1/analytics/spend?limit=-1")]
    [InlineData("/manage/v1/analytics/sessions/top?days=-7")]
    [InlineData("/manage/v1/analytics/sessions/top?days=100000")]
    [InlineData("/manage/v1/analytics/sessions/top?days=15")]
    [InlineData("/manage/v1/analytics/cache?by=session&from=2026-11-01&to=2026-11-09")]
    [InlineData("/manage/v1/analytics/sessions/top?days=1e3")]
    [InlineData("/manage/v1/analytics/sessions/top?limit=2147483648")]
    [InlineData("/manage/v1/analytics/sessions/top?limit=ten")]
    [InlineData("/manage/v1/analytics/errors?to=2026-02-30")]
    [InlineData("/manage/v1/analytics/errors?from=2025-01-01&to=2026-11-01")]
    [InlineData("/manage/v1/analytics/latency?from=2026-11-02&to=2026-11-01")]
    public async Task Hostile_queries_get_a_400_in_anthropics_shape(string path)
    {
        var gateway = await SharedGatewayAsync();
        using var manage = Manage(gateway);
        using var response = await manage.GetAsync(path).WaitAsync(TimeSpan.FromSeconds(60));
        await Http.AssertErrorAsync(response, 400, "invalid_request_error");
    }

    [Fact]
    public async Task A_session_whose_id_holds_a_slash_opens_by_query_and_a_missing_or_repeated_id_is_a_400()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var session = "team/" + Guid.NewGuid().ToString("N");
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, Person(UserId()), Sonnet, [.. Usage(100, 10, 0, 0, 0), ("x-claude-code-session-id", session)]));
        await StackFixture.StoredAsync(gateway, 1);

        var tree = await GetAsync<SessionTree>(gateway, "/manage/v1/analytics/sessions?id=" + Uri.EscapeDataString(session));
        Assert.Equal(session, tree.Session.SessionId);
        Assert.Equal(1, tree.Session.Requests);
        using var manage = Manage(gateway);
        foreach (var query in new[] { "", "?id=", "?id=a&id=b", "?id=" + new string('s', AnalyticsApi.MaxIdLength + 1) })
        {
            using var refused = await manage.GetAsync("/manage/v1/analytics/sessions" + query).WaitAsync(TimeSpan.FromSeconds(60));
            await Http.AssertErrorAsync(refused, 400, "invalid_request_error");
        }
        using var unknown = await manage.GetAsync("/manage/v1/analytics/sessions?id=no%2Fsuch").WaitAsync(TimeSpan.FromSeconds(60));
        await Http.AssertErrorAsync(unknown, 404, "not_found_error");
    }

    [Fact]
    public async Task An_unknown_session_is_a_404_and_an_oversized_id_a_400()
    {
        var gateway = await SharedGatewayAsync();
        using var manage = Manage(gateway);
        using (var unknown = await manage.GetAsync("/manage/v1/analytics/sessions/no-such-session").WaitAsync(TimeSpan.FromSeconds(60)))
        {
            await Http.AssertErrorAsync(unknown, 404, "not_found_error");
        }
        using (var oversized = await manage.GetAsync("/manage/v1/analytics/sessions/" + new string('s', AnalyticsApi.MaxIdLength + 1)).WaitAsync(TimeSpan.FromSeconds(60)))
        {
            await Http.AssertErrorAsync(oversized, 400, "invalid_request_error");
        }
        using (var oversized = await manage.GetAsync("/manage/v1/analytics/cache?by=agent&session=" + new string('s', AnalyticsApi.MaxIdLength + 1)).WaitAsync(TimeSpan.FromSeconds(60)))
        {
            await Http.AssertErrorAsync(oversized, 400, "invalid_request_error");
        }
        // Odd but well-formed input is answered, not refused.
        using var odd = await manage.GetAsync("/manage/v1/analytics/sessions/%27%3B%20DROP%20TABLE%20session_rollups%3B--").WaitAsync(TimeSpan.FromSeconds(60));
        await Http.AssertErrorAsync(odd, 404, "not_found_error");
        string DaysAgo(int days) => Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-days).ToOffset(TimeSpan.FromHours(5))
            .ToString("yyyy-MM-ddTHH:mm:sszzz", System.Globalization.CultureInfo.InvariantCulture));
        foreach (var by in new[] { "model", "user", "group", "device", "session", "agent" })
        {
            var page = await GetAsync<CacheAnalytics>(gateway,
                $"/manage/v1/analytics/cache?by={by}&from={DaysAgo(by == "session" ? 5 : 40)}{(by == "agent" ? "&session=no-such-session" : "")}");
            Assert.Equal(TimeSpan.Zero, page.From.Offset);
            Assert.Equal(TimeSpan.Zero, page.From.TimeOfDay);
        }
        using var noKey = new HttpClient { BaseAddress = gateway.ManagementUrl };
        using var refused = await noKey.GetAsync("/manage/v1/analytics/cache").WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
    }

    private async Task<GatewayHost> SharedGatewayAsync() => await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
}
