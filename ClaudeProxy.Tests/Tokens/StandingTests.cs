using System.Net;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>Device standing and spend kept in Redis, seeded from Postgres, and holding when either is away.</summary>
public sealed class StandingTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string OperatorKey = TestSecrets.OperatorKey;

    private static HttpClient Manage(GatewayHost gateway)
    {
        var client = new HttpClient { BaseAddress = gateway.ManagementUrl };
        client.DefaultRequestHeaders.Authorization = new("Bearer", OperatorKey);
        return client;
    }

    [Fact]
    public async Task A_revoked_device_is_refused_by_a_fresh_instance_while_postgres_is_down()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var a = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var device = TestSecrets.DeviceId();
        var token = await a.BootstrapAsync(device);
        using (var revoke = await Manage(a).PostAsync($"/manage/v1/devices/{device}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        }

        await fx.Postgres.StopAsync();
        try
        {
            // A new instance has no cache and cannot ask Postgres: the standing in Redis is all it has, and enough.
            var fresh = await fx.GatewayAsync(db, s => s["MIGRATE_ON_START"] = "false");
            var marker = Guid.NewGuid().ToString("N");
            using var refused = await fresh.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-test-marker", marker)));
            var (_, message) = await Http.AssertErrorAsync(refused, 401, "authentication_error");
            Assert.Equal("this device has been revoked by an operator", message);
            Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_revocation_made_while_redis_is_away_reaches_redis_once_it_is_back(bool frozen)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var other = await fx.GatewayAsync(db);
        var device = TestSecrets.DeviceId();
        var token = await gateway.BootstrapAsync(device);
        // Stopped, Redis refuses connections; frozen (SIGSTOP), it keeps them open and every command times out.
        if (frozen)
        {
            fx.Redis.Freeze();
        }
        else
        {
            await fx.Redis.StopAsync();
        }
        try
        {
            using var revoke = await Manage(gateway).PostAsync($"/manage/v1/devices/{device}/revoke", null);
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        }
        finally
        {
            // Redis comes back with what it held before: the device still active there.
            if (frozen)
            {
                fx.Redis.Thaw();
            }
            else
            {
                await fx.Redis.StartAgainAsync();
            }
        }
        // The instance that made the change writes it to Redis once Redis is back; no event says when.
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((string?)await redis.GetDatabase().HashGetAsync(RedisAdmissionStore.StandingKey(device), "status") != "revoked")
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the revocation never reached Redis");
            await Task.Delay(20);
        }
        using var probe = await other.Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"model":"claude-sonnet-4-5","messages":[]}""", bearer: token));
        var (_, message) = await Http.AssertErrorAsync(probe, 401, "authentication_error");
        Assert.Equal("this device has been revoked by an operator", message);
    }

    [Fact]
    public async Task Restore_keeps_tokens_issued_before_the_revocation_dead()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var device = TestSecrets.DeviceId();
        var stolen = await gateway.BootstrapAsync(device);
        using var manage = Manage(gateway);
        using (var revoke = await manage.PostAsync($"/manage/v1/devices/{device}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        }
        using (var restore = await manage.PostAsync($"/manage/v1/devices/{device}/restore", null))
        {
            Assert.Equal(HttpStatusCode.OK, restore.StatusCode);
        }
        Assert.Equal(2, await fx.ScalarAsync<int>(db, "SELECT policy_version FROM devices WHERE device_id = @d", ("d", device)));

        using (var old = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: stolen)))
        {
            var (_, message) = await Http.AssertErrorAsync(old, 401, "authentication_error");
            Assert.Equal("this device's policy has changed: refresh the token with POST /refresh", message);
        }
        var fresh = await gateway.BootstrapAsync(device);
        using var ok = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: fresh));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Standing_lost_by_redis_is_seeded_from_postgres_with_distinct_answers()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var revoked = await gateway.BootstrapAsync("seed-revoked-" + TestSecrets.DeviceId());
        var pending = await gateway.BootstrapAsync("seed-pending-" + TestSecrets.DeviceId());
        var stale = await gateway.BootstrapAsync("seed-stale-" + TestSecrets.DeviceId());
        await fx.ExecuteAsync(db, "UPDATE devices SET status = 'revoked' WHERE device_id LIKE 'seed-revoked-%'");
        await fx.ExecuteAsync(db, "UPDATE devices SET status = 'pending' WHERE device_id LIKE 'seed-pending-%'");
        await fx.ExecuteAsync(db, "UPDATE devices SET policy_version = 5 WHERE device_id LIKE 'seed-stale-%'");
        await FlushAsync();

        foreach (var (token, message, reason) in new[]
        {
            (revoked, "this device has been revoked by an operator", "revoked"),
            (pending, "this device is waiting for an operator's approval", "pending"),
            (stale, "this device's policy has changed: refresh the token with POST /refresh", "policy_stale"),
        })
        {
            using var metrics = new MetricCapture(gateway.Services);
            using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            var (_, text) = await Http.AssertErrorAsync(refused, 401, "authentication_error");
            Assert.Equal(message, text);
            Assert.Equal(1, metrics.Sum("claudeproxy.requests.rejected", "reason", reason));
        }
    }

    [Fact]
    public async Task Spend_counters_are_rebuilt_from_postgres_after_redis_loses_them()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var device = TestSecrets.DeviceId();
        // Haiku 4.5: 30 input x $1/M + 1000 output x $5/M = $0.00503 a request; the reservation is a little more.
        // Nine are spent; a tenth fits under the cap, an eleventh does not.
        const decimal cap = 0.0505m;
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = cap, ["rate_limit"] = 1000 });
        const string body = """{"model":"claude-haiku-4-5-20251001","max_tokens":1000,"messages":[{"role":"user","content":"Hi"}]}""";
        (string, string)[] usage = [("x-sim-input-tokens", "30"), ("x-sim-output-tokens", "1000")];
        for (var i = 0; i < 9; i++)
        {
            using var spent = await gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: usage));
            Assert.Equal(HttpStatusCode.OK, spent.StatusCode);
        }
        await StackFixture.StoredAsync(gateway, 9);
        await FlushAsync();

        using (var tenth = await gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: usage)))
        {
            Assert.Equal(HttpStatusCode.OK, tenth.StatusCode);
        }
        using var eleventh = await gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: usage));
        var (_, message) = await Http.AssertErrorAsync(eleventh, 429, "rate_limit_error");
        Assert.Contains("spend cap", message);
    }

    private async Task FlushAsync()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString + ",allowAdmin=true");
        await redis.GetServers()[0].FlushAllDatabasesAsync();
    }
}
