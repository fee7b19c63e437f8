using System.Text;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Events;

/// <summary>
/// Events raised while Postgres is down wait in memory and are stored and delivered once it is back, with the time they
/// happened: an operator learns of the outage afterwards, told when it began. (A stack of its own: it stops Postgres.)
/// </summary>
public sealed class EventOutageTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private async Task<GatewayHost> GatewayAsync() => await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s =>
    {
        s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
        (s["WEBHOOK_POLL_MS"], s["WEBHOOK_RETRY_INITIAL_MS"], s["WEBHOOK_RETRY_MAX_MS"]) = ("200", "100", "300");
    });

    /// <summary>A receiver registered as a webhook for <paramref name="events"/>.</summary>
    private static async Task<WebhookReceiver> ReceiverAsync(GatewayHost gateway, params string[] events)
    {
        var receiver = await WebhookReceiver.StartAsync();
        using var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        using var created = await manage.PostAsync("/manage/v1/webhooks", new StringContent(JsonSerializer.Serialize(new { url = receiver.Url.ToString(), events }),
            Encoding.UTF8, "application/json"));
        created.EnsureSuccessStatusCode();
        return receiver;
    }

    [Fact]
    public async Task Postgres_lost_and_back_are_delivered_after_the_outage_with_the_time_it_began()
    {
        var gateway = await GatewayAsync();
        await using var receiver = await ReceiverAsync(gateway, EventTypes.PostgresLost, EventTypes.PostgresBack);

        var health = gateway.Services.GetRequiredService<BackgroundHealth>();
        DateTimeOffset restarted;
        await fx.Postgres.StopAsync();
        try
        {
            // The usage writer is the first to notice: give it something to store.
            gateway.Services.GetRequiredService<IUsageSink>().Enqueue(TestEvents.Usage());
            await health.WaitForAsync(UsageWriter.WriterService, failing: true).WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            await fx.Postgres.StartAgainAsync();
            // Nothing could be stored before now: an event stamped earlier kept the time it was raised at.
            restarted = DateTimeOffset.UtcNow;
        }
        await StackFixture.StoredAsync(gateway, 1);

        var received = new[] { await receiver.NextAsync(TimeSpan.FromSeconds(60)), await receiver.NextAsync(TimeSpan.FromSeconds(60)) };
        var lost = received.Single(r => r.Type == EventTypes.PostgresLost);
        var back = received.Single(r => r.Type == EventTypes.PostgresBack);
        Assert.True(lost.Json.GetProperty("time").GetDateTimeOffset() < restarted, "the lost event keeps the time Postgres was found down");
        Assert.True(lost.Json.GetProperty("time").GetDateTimeOffset() < back.Json.GetProperty("time").GetDateTimeOffset());
        var instance = lost.Json.GetProperty("data").GetProperty("instance").GetString();
        Assert.False(string.IsNullOrEmpty(instance));
        Assert.Equal(instance, back.Json.GetProperty("data").GetProperty("instance").GetString());
    }

    [Fact]
    public async Task Redis_lost_and_back_are_delivered_once_each_with_the_instance()
    {
        var gateway = await GatewayAsync();
        await using var receiver = await ReceiverAsync(gateway, EventTypes.RedisLost, EventTypes.RedisBack);

        var health = gateway.Services.GetRequiredService<BackgroundHealth>();
        await fx.Redis.StopAsync();
        try
        {
            // The heartbeat is the one that tells: it fails within its interval.
            await health.WaitForAsync(Gateway.Management.GatewayInstances.Service, failing: true).WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            await fx.Redis.StartAgainAsync();
        }
        var lost = await receiver.NextAsync(TimeSpan.FromSeconds(60));
        var back = await receiver.NextAsync(TimeSpan.FromSeconds(60));
        Assert.Equal([EventTypes.RedisLost, EventTypes.RedisBack], new[] { lost.Type, back.Type });
        var instance = lost.Json.GetProperty("data").GetProperty("instance").GetString();
        Assert.False(string.IsNullOrEmpty(instance));
        Assert.Equal(instance, back.Json.GetProperty("data").GetProperty("instance").GetString());
        Assert.False(string.IsNullOrEmpty(lost.Json.GetProperty("data").GetProperty("reason").GetString()));
        // One episode, told once: nothing more arrives.
        Assert.Empty(receiver.Drain());
    }
}
