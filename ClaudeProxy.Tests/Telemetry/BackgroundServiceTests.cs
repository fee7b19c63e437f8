using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Telemetry;

/// <summary>Background services against a real Redis that goes away: the process keeps serving, reports it, and resumes.</summary>
public sealed class BackgroundServiceTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    private static async Task<JsonElement> ReadyCheckAsync(GatewayHost gateway, string name)
    {
        using var ready = await gateway.Client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("checks").GetProperty(name).Clone();
    }

    [Fact]
    public async Task Redis_frozen_longer_than_the_heartbeat_timeout_leaves_the_gateway_serving_and_the_heartbeat_resumes()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var health = gateway.Services.GetRequiredService<BackgroundHealth>();
        var lifetime = gateway.Services.GetRequiredService<IHostApplicationLifetime>();
        var id = gateway.Services.GetRequiredService<GatewayInstances>().Id;
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        await health.WaitForAsync(GatewayInstances.Service, failing: false).WaitAsync(Wait);
        using var metrics = new MetricCapture(gateway.Services);

        // Frozen, not gone: the connection stays up and every command times out (RedisTimeoutException).
        fx.Redis.Freeze();
        try
        {
            // The heartbeat times out: it is reported, and nothing stops.
            await health.WaitForAsync(GatewayInstances.Service, failing: true).WaitAsync(Wait);
            var check = await ReadyCheckAsync(gateway, "background");
            Assert.Equal("Degraded", check.GetProperty("status").GetString());
            Assert.Contains("heartbeat: failing", check.GetProperty("description").GetString());
            Assert.True(metrics.Sum("claudeproxy.background.failures", "service", GatewayInstances.Service) >= 1);

            // Fail-open: requests are still served, with in-process limits.
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the host must not stop because Redis is away");
        }
        finally
        {
            fx.Redis.Thaw();
        }

        await health.WaitForAsync(GatewayInstances.Service, failing: false).WaitAsync(Wait);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString);
        Assert.True(await redis.GetDatabase().HashExistsAsync("cp:instances", id), "the heartbeat is written again");
        Assert.Contains("heartbeat: ok", (await ReadyCheckAsync(gateway, "background")).GetProperty("description").GetString());
        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested);
        Assert.Single(gateway.Logs.Lines, l => l.Contains("heartbeat cannot reach Redis", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_gateway_started_while_redis_is_down_serves_and_subscribes_to_breaker_resets_and_standing_changes_once_redis_is_back()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        await fx.Redis.KillAsync();
        GatewayHost gateway;
        try
        {
            gateway = await fx.GatewayAsync(db).WaitAsync(Wait);
            var health = gateway.Services.GetRequiredService<BackgroundHealth>();
            await health.WaitForAsync(BreakerResetBroadcast.Service, failing: true).WaitAsync(Wait);
            var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("breaker-reset-subscriber: failing", (await ReadyCheckAsync(gateway, "background")).GetProperty("description").GetString());
        }
        finally
        {
            await fx.Redis.StartAgainAsync();
        }
        await gateway.Services.GetRequiredService<BackgroundHealth>().WaitForAsync(BreakerResetBroadcast.Service, failing: false).WaitAsync(Wait);
        await gateway.Services.GetRequiredService<BackgroundHealth>().WaitForAsync(DeviceStandingCache.Service, failing: false).WaitAsync(Wait);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString);
        Assert.True(await redis.GetSubscriber().PublishAsync(BreakerResetBroadcast.Channel, "test") >= 1, "the gateway listens for resets");
        Assert.True(await redis.GetSubscriber().PublishAsync(DeviceStandingCache.Channel, "test") >= 1, "the gateway listens for standing changes");
        Assert.False(gateway.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested);
    }
}
