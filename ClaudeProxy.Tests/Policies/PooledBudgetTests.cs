using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Policies;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Policies;

/// <summary>
/// Groups and their caps as a request meets them: a pool shared by a team never overspends, across instances and
/// under concurrency; the most restrictive rule binds; Claude Code is told where a person stands (the unified headers
/// at 75 % and 95 %, the billing refusal at the cap, <c>/api/oauth/usage</c>), and device tokens only when they ask.
/// </summary>
public sealed class PooledBudgetTests(StackFixture fx) : IClassFixture<StackFixture>
{
    // Opus 4.1: the simulator's 25 input and 12 output tokens cost $0.001275; max_tokens 12 reserves about $0.0014.
    private const string Opus = """{"model":"claude-opus-4-1-20250805","max_tokens":12,"messages":[{"role":"user","content":"Hi"}]}""";
    private const string Haiku = """{"model":"claude-haiku-4-5-20251001","max_tokens":12,"messages":[{"role":"user","content":"Hi"}]}""";

    private string Person(string userId, decimal? cap = null, params string[] groups)
    {
        var claims = new Dictionary<string, object> { ["user_id"] = userId, ["email"] = userId + "@example.com", ["groups"] = groups };
        if (cap is decimal c)
        {
            claims["spend_cap"] = (double)c;
        }
        return TokenForge.Make(fx.JwtSecret, deviceId: "@" + userId, claims: claims);
    }

    private static string UserId() => "usr_" + Guid.NewGuid().ToString("N")[..16];

    private async Task<string> GroupAsync(GatewayHost gateway, string name, string source = "idp", object? policy = null)
    {
        using var manage = Manage(gateway);
        using var created = await manage.PostAsync("/manage/v1/groups", JsonContent(new { name, source, policy }));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var json = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("group_id").GetString()!;
    }

    private async Task LimitAsync(string db, string scopeType, string scopeId, bool pooled, long cents, string period = "monthly")
    {
        await fx.ExecuteAsync(db, """
            INSERT INTO spend_limits (spend_limit_id, scope_type, scope_id, pooled_budget, amount_cents, period, currency, created_at, updated_at)
            VALUES (@id, @type, @scope, @pooled, @cents, @period, 'USD', now(), now())
            """, ("id", "spl_" + Guid.NewGuid().ToString("N")[..24]), ("type", scopeType), ("scope", scopeId), ("pooled", pooled), ("cents", cents), ("period", period));
    }

    private static async Task ReloadAsync(params GatewayHost[] gateways)
    {
        foreach (var gateway in gateways)
        {
            await gateway.Services.GetRequiredService<PolicyStore>().ReloadAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static HttpClient Manage(GatewayHost gateway)
    {
        var client = new HttpClient { BaseAddress = gateway.ManagementUrl };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        return client;
    }

    private static StringContent JsonContent(object value) => new(JsonSerializer.Serialize(value), System.Text.Encoding.UTF8, "application/json");

    private Task<GatewayHost> GatewayAsync(string db) => fx.GatewayAsync(db, s => (s["ADMIN_API_KEY"], s["MAX_CONCURRENT_REQUESTS_PER_DEVICE"]) = (TestSecrets.OperatorKey, "100"));

    /// <summary>Usage already recorded this period, as if the person had spent it earlier.</summary>
    private static async Task SpentAsync(GatewayHost gateway, string deviceId, decimal usd, string? groupIds = null)
    {
        var writer = gateway.Services.GetRequiredService<UsageWriter>();
        var before = writer.Stored;
        gateway.Services.GetRequiredService<IUsageSink>().Enqueue(TestEvents.Usage(device: deviceId) with { CostUsd = usd, GroupIds = groupIds });
        await writer.WaitForStoredAsync(before + 1).WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Sixty_concurrent_requests_of_twenty_members_on_two_instances_never_spend_past_the_pool()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var a = await GatewayAsync(db);
        var b = await GatewayAsync(db);
        var team = "team-" + Guid.NewGuid().ToString("N")[..8];
        var groupId = await GroupAsync(a, team);
        // 3 cents: 23 requests at their actual cost, 21 at once at their worst case.
        await LimitAsync(db, "rbac_group", groupId, pooled: true, cents: 3);
        await ReloadAsync(a, b);

        var members = Enumerable.Range(0, 20).Select(_ => Person(UserId(), null, team)).ToArray();
        using var start = new SemaphoreSlim(0);
        var requests = Enumerable.Range(0, 60).Select(async i =>
        {
            await start.WaitAsync();
            using var response = await (i % 2 == 0 ? a : b).Client.SendAsync(Http.Post("/v1/messages", Opus, bearer: members[i % 20]));
            var body = await response.Content.ReadAsStringAsync();
            return (response.StatusCode, body);
        }).ToArray();
        start.Release(60);
        var answers = await Task.WhenAll(requests).WaitAsync(TimeSpan.FromSeconds(120));

        var admitted = answers.Count(x => x.StatusCode == HttpStatusCode.OK);
        Assert.All(answers.Where(x => x.StatusCode != HttpStatusCode.OK), x =>
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, x.StatusCode);
            using var json = JsonDocument.Parse(x.body);
            Assert.Equal("billing_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
            Assert.Contains($"{team} group's shared pool", json.RootElement.GetProperty("error").GetProperty("message").GetString());
        });
        // The pool bound (not everything got through), and it was not refused early: every admission that fits fits.
        Assert.InRange(admitted, 21, 23);
        var spent = await WaitForSpendAsync(db, groupId, admitted);
        Assert.True(spent <= 0.03m, $"the pool of $0.03 was overspent: ${spent}");
        // Every one of them was recorded under the group, so a lost pool counter is rebuilt from the record.
        Assert.Equal(admitted, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE group_ids = @g", ("g", groupId)));
    }

    private async Task<decimal> WaitForSpendAsync(string db, string groupId, int events)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var count = await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE group_ids = @g", ("g", groupId));
            if (count >= events)
            {
                return await fx.ScalarAsync<decimal>(db, "SELECT coalesce(sum(cost_usd), 0) FROM usage_events WHERE group_ids = @g", ("g", groupId));
            }
            await Task.Delay(50, timeout.Token);
        }
    }

    [Fact]
    public async Task The_most_restrictive_rule_binds_models_rate_limit_and_spend()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var team = "team-" + Guid.NewGuid().ToString("N")[..8];
        var groupId = await GroupAsync(gateway, team, policy: new { models = new[] { "claude-haiku-*" }, rate_limit = 3 });
        // Own cap $1, each member $0.50 a month, the pool $100, the organisation $1,000.
        await LimitAsync(db, "rbac_group", groupId, pooled: false, cents: 50);
        await LimitAsync(db, "rbac_group", groupId, pooled: true, cents: 10_000);
        await LimitAsync(db, "organization", "", pooled: false, cents: 100_000);
        await ReloadAsync(gateway);
        var userId = UserId();
        var token = Person(userId, 1m, team, "a-group-nobody-configured");

        // The group's model list narrows the token's (claude-*).
        using (var opus = await gateway.Client.SendAsync(Http.Post("/v1/messages", Opus, bearer: token)))
        {
            Assert.NotEqual(HttpStatusCode.OK, opus.StatusCode);
            Assert.Contains("claude-opus-4-1-20250805", await opus.Content.ReadAsStringAsync());
        }
        // Of the caps, $0.45 spent makes the member cap the closest to its limit (90 %).
        await SpentAsync(gateway, "@" + userId, 0.45m, groupId);
        using (var usage = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/api/oauth/usage") { Headers = { Authorization = new("Bearer", token) } }))
        {
            Assert.Equal(HttpStatusCode.OK, usage.StatusCode);
            using var json = JsonDocument.Parse(await usage.Content.ReadAsStringAsync());
            var extra = json.RootElement.GetProperty("extra_usage");
            Assert.Equal(50, extra.GetProperty("monthly_limit").GetInt64());
            Assert.Equal(45, extra.GetProperty("used_credits").GetInt64());
            Assert.Equal(90, extra.GetProperty("utilization").GetDouble());
            var limits = json.RootElement.GetProperty("limits").EnumerateArray().ToList();
            // The own cap and the member cap count the same spend in the same period: one cap, the lower.
            Assert.Equal(3, limits.Count);
            var active = Assert.Single(limits, l => l.GetProperty("is_active").GetBoolean());
            Assert.Contains("cap on each member", active.GetProperty("name").GetString());
            Assert.Equal("warning", active.GetProperty("severity").GetString());
        }
        // The group's request limit (3) is lower than the token's.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: token));
            statuses.Add(response.StatusCode);
            if (i == 0)
            {
                Assert.Equal("allowed_warning", Header(response, "anthropic-ratelimit-unified-status"));
                Assert.Equal("0.90", Header(response, "anthropic-ratelimit-unified-overage-utilization"));
            }
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Equal("rate_limit_error", (await Http.AssertErrorAsync(response, 429, "rate_limit_error")).Type);
            }
        }
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);

        // The operators see the same: which rule binds, and why.
        using var manage = Manage(gateway);
        using var device = await manage.GetAsync($"/manage/v1/devices/{Uri.EscapeDataString("@" + userId)}/policy");
        Assert.Equal(HttpStatusCode.NotFound, device.StatusCode);
    }

    [Theory]
    [InlineData(0.10, "allowed", null)]
    [InlineData(0.80, "allowed_warning", "0.75")]
    [InlineData(0.96, "allowed_warning", "0.95")]
    public async Task A_person_is_told_their_standing_on_every_answer_with_the_threshold_passed(double spent, string status, string? threshold)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var userId = UserId();
        await SpentAsync(gateway, "@" + userId, (decimal)spent);

        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: Person(userId, 1m)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(status, Header(response, "anthropic-ratelimit-unified-status"));
        Assert.Equal(status, Header(response, "anthropic-ratelimit-unified-overage-status"));
        Assert.Equal("overage", Header(response, "anthropic-ratelimit-unified-representative-claim"));
        Assert.Equal(spent.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture), Header(response, "anthropic-ratelimit-unified-overage-utilization"));
        Assert.Equal(threshold, Header(response, "anthropic-ratelimit-unified-overage-surpassed-threshold"));
        var reset = DateTimeOffset.FromUnixTimeSeconds(long.Parse(Header(response, "anthropic-ratelimit-unified-reset")!, System.Globalization.CultureInfo.InvariantCulture));
        var now = DateTimeOffset.UtcNow;
        Assert.Equal(new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1), reset);
        Assert.Equal(Header(response, "anthropic-ratelimit-unified-reset"), Header(response, "anthropic-ratelimit-unified-overage-reset"));
    }

    [Fact]
    public async Task At_the_cap_a_person_gets_the_billing_refusal_and_a_device_keeps_its_rate_limit_error_unless_it_opts_in()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var userId = UserId();
        await SpentAsync(gateway, "@" + userId, 1m);

        using (var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: Person(userId, 1m))))
        {
            var error = await Http.AssertErrorAsync(refused, 429, "billing_error");
            Assert.Contains("your own spend cap of 1.00 USD per month is reached", error.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Equal("false", Header(refused, "x-should-retry"));
            Assert.Equal("rejected", Header(refused, "anthropic-ratelimit-unified-status"));
            Assert.Equal("rejected", Header(refused, "anthropic-ratelimit-unified-overage-status"));
            var retryAfter = int.Parse(Header(refused, "retry-after")!, System.Globalization.CultureInfo.InvariantCulture);
            var now = DateTimeOffset.UtcNow;
            var reset = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1);
            Assert.InRange(retryAfter, (reset - now).TotalSeconds - 60, (reset - now).TotalSeconds + 60);
        }

        var device = TestSecrets.DeviceId();
        await SpentAsync(gateway, device, 1m);
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = 1.0 });
        using (var plain = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: token)))
        {
            await Http.AssertErrorAsync(plain, 429, "rate_limit_error");
            Assert.Null(Header(plain, "anthropic-ratelimit-unified-status"));
            Assert.Null(Header(plain, "x-should-retry"));
        }
        var optIn = Http.Post("/v1/messages", Haiku, bearer: token);
        optIn.Headers.Add("claudeproxy-spend-limits", "unified");
        using (var unified = await gateway.Client.SendAsync(optIn))
        {
            await Http.AssertErrorAsync(unified, 429, "billing_error");
            Assert.Equal("rejected", Header(unified, "anthropic-ratelimit-unified-status"));
        }
        // Nothing was forwarded or recorded for the refusals: the two seeded events only.
        Assert.Equal(2, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));
    }

    [Fact]
    public async Task The_usage_endpoint_answers_only_a_valid_token_and_404_without_a_cap()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        using (var anonymous = await gateway.Client.GetAsync("/api/oauth/usage"))
        {
            await Http.AssertErrorAsync(anonymous, 401, "authentication_error");
        }
        using var uncapped = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/api/oauth/usage") { Headers = { Authorization = new("Bearer", Person(UserId())) } });
        await Http.AssertErrorAsync(uncapped, 404, "not_found_error");
    }

    [Fact]
    public async Task A_lost_pool_counter_is_rebuilt_from_the_usage_recorded_under_the_group()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var team = "team-" + Guid.NewGuid().ToString("N")[..8];
        var groupId = await GroupAsync(gateway, team);
        await LimitAsync(db, "rbac_group", groupId, pooled: true, cents: 100);
        await ReloadAsync(gateway);
        // Another member spent $0.999 of the $1 pool, less than this request's worst case left; Redis holds no counter for it.
        await SpentAsync(gateway, "@" + UserId(), 0.999m, groupId);
        await SpentAsync(gateway, "@" + UserId(), 5m, "grp_someotherteam000");

        using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Opus, bearer: Person(UserId(), null, team)));
        var error = await Http.AssertErrorAsync(refused, 429, "billing_error");
        Assert.Contains("(0.999 USD spent or reserved)", error.Message);
    }

    [Fact]
    public async Task Limits_set_through_the_spend_limits_api_apply_at_once_and_effective_names_the_binding_one()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        var team = "team-" + Guid.NewGuid().ToString("N")[..8];
        var groupId = await GroupAsync(gateway, team);
        var userId = UserId();
        await fx.ExecuteAsync(db, """
            INSERT INTO users (user_id, issuer, subject, email, name, groups, status, first_seen, last_seen)
            VALUES (@id, 'https://idp.example.com', @id, 'bea@example.com', 'Bea', @groups, 'active', now(), now())
            """, ("id", userId), ("groups", new[] { team }));
        using var manage = Manage(gateway);
        async Task SetAsync(object body)
        {
            using var set = await manage.PostAsync("/v1/organizations/spend_limits", JsonContent(body));
            Assert.Equal(HttpStatusCode.Created, set.StatusCode);
        }
        await SetAsync(new { scope = new { type = "user", user_id = userId }, amount = "200", period = "monthly", currency = "USD" });
        await SetAsync(new { scope = new { type = "rbac_group", rbac_group_id = groupId }, amount = "100", period = "weekly", currency = "USD", pooled_budget = true });
        await SpentAsync(gateway, "@" + userId, 0.10m, groupId);

        // No reload asked for: the API's writes reach admission by themselves. The pool (weekly, $1) is half used.
        using (var answered = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: Person(userId, null, team))))
        {
            Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
            Assert.Equal("0.10", Header(answered, "anthropic-ratelimit-unified-overage-utilization"));
        }
        using var effective = await manage.GetAsync($"/v1/organizations/spend_limits/effective?user_id={userId}");
        Assert.Equal(HttpStatusCode.OK, effective.StatusCode);
        using var json = JsonDocument.Parse(await effective.Content.ReadAsStringAsync());
        var data = json.RootElement.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(["user", "group_pool"], data.Select(d => d.GetProperty("source").GetString()));
        var binding = json.RootElement.GetProperty("binding");
        Assert.Equal("group_pool", binding.GetProperty("source").GetString());
        Assert.Equal(groupId, binding.GetProperty("scope").GetProperty("rbac_group_id").GetString());
        Assert.Equal("weekly", binding.GetProperty("period").GetString());
        Assert.Equal("100", binding.GetProperty("amount").GetString());
        Assert.InRange(long.Parse(binding.GetProperty("spent").GetString()!, System.Globalization.CultureInfo.InvariantCulture), 10, 11);
        Assert.Contains(team, json.RootElement.GetProperty("binding_reason").GetString());

        using var policy = await manage.GetAsync($"/manage/v1/users/{userId}/policy");
        using var view = JsonDocument.Parse(await policy.Content.ReadAsStringAsync());
        Assert.Equal(team, view.RootElement.GetProperty("groups")[0].GetProperty("name").GetString());
        Assert.Equal(2, view.RootElement.GetProperty("caps").GetArrayLength());
        Assert.Equal("group_pool", view.RootElement.GetProperty("caps").EnumerateArray().Single(c => c.GetProperty("binding").GetBoolean()).GetProperty("kind").GetString());

        using var missing = await manage.GetAsync("/v1/organizations/spend_limits/effective");
        await Http.AssertErrorAsync(missing, 400, "invalid_request_error");
        using var unknown = await manage.GetAsync("/v1/organizations/spend_limits/effective?user_id=usr_0000000000000000");
        await Http.AssertErrorAsync(unknown, 404, "not_found_error");
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;
}
