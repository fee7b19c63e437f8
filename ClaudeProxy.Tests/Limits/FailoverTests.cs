using System.Diagnostics;
using System.Net;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace ClaudeProxy.Tests.Limits;

/// <summary>Spend counters and the fail-open bound while a real redis-server goes away and comes back.</summary>
public sealed class FailoverTests(ITestOutputHelper output) : RedisStackTests
{
    // Sonnet: 10 input x $3/M + 64 output x $15/M. The reservation (estimated input, max_tokens 64) is a little more.
    private const long ActualMicros = 990;
    private static readonly (string, string)[] Usage = [("x-sim-input-tokens", "10"), ("x-sim-output-tokens", "64")];
    private Task<GatewayHost> GatewayAsync(Action<Dictionary<string, string?>>? configure = null) =>
        StartGatewayAsync(s =>
        {
            s["REDIS_FAILURE_MODE"] = "open";
            configure?.Invoke(s);
        });

    private string CappedToken(string device, decimal cap) =>
        TokenForge.Make(JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = cap, ["rate_limit"] = 1000 });

    [Fact]
    public async Task A_settlement_redis_could_not_take_lands_exactly_once_redis_is_back()
    {
        var gateway = await GatewayAsync();
        var device = TestSecrets.DeviceId();
        var token = CappedToken(device, 1m);
        var gate = "settle-" + Guid.NewGuid().ToString("N");
        using var held = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: [.. Usage, ("x-sim-hold", gate)]),
            HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, held.StatusCode);
        var reserved = await SpentAsync(device);
        Assert.True(reserved > ActualMicros, $"the reservation ({reserved}) covers the worst case");

        var multiplexer = gateway.Services.GetRequiredService<IConnectionMultiplexer>();
        var lost = ConnectionEvent(h => multiplexer.ConnectionFailed += h);
        await Redis.StopAsync();
        await lost.WaitAsync(TimeSpan.FromSeconds(20));
        Simulator.State.Release(gate);
        await held.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));

        var retries = gateway.Services.GetRequiredService<SettlementRetries>();
        await EventuallyAsync(() => retries.Pending == 1, "the settlement waits for Redis");
        var restored = ConnectionEvent(h => multiplexer.ConnectionRestored += h);
        await Redis.StartAgainAsync();
        await restored.WaitAsync(TimeSpan.FromSeconds(30));
        await retries.EmptyAsync().WaitAsync(TimeSpan.FromSeconds(30));

        // The counter Redis kept through the outage now holds what the request really cost, not its reservation.
        Assert.Equal(ActualMicros, await SpentAsync(device));
        using var next = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: Usage));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        await EventuallyAsync(async () => await SpentAsync(device) == 2 * ActualMicros, "the next request settles on top, once");
    }

    [Fact]
    public async Task A_reservation_made_in_process_is_settled_there_and_its_spend_reaches_the_redis_counter()
    {
        var gateway = await GatewayAsync();
        var device = TestSecrets.DeviceId();
        var token = CappedToken(device, 1m);
        using (var first = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: Usage)))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }
        await EventuallyAsync(async () => await SpentAsync(device) == ActualMicros, "the first request is settled in Redis");

        var multiplexer = gateway.Services.GetRequiredService<IConnectionMultiplexer>();
        var lost = ConnectionEvent(h => multiplexer.ConnectionFailed += h);
        await Redis.StopAsync();
        await lost.WaitAsync(TimeSpan.FromSeconds(20));
        var gate = "memory-" + Guid.NewGuid().ToString("N");
        using var held = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: [.. Usage, ("x-sim-hold", gate)]),
            HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, held.StatusCode);

        var restored = ConnectionEvent(h => multiplexer.ConnectionRestored += h);
        await Redis.StartAgainAsync();
        await restored.WaitAsync(TimeSpan.FromSeconds(30));
        Simulator.State.Release(gate);
        await held.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));

        // Settled against the in-process reservation, never as a Redis reservation it never was; what it cost is
        // added to the Redis counter that survived the outage.
        await EventuallyAsync(async () => await SpentAsync(device) == 2 * ActualMicros, "the in-process spend is added to Redis");
        await gateway.Services.GetRequiredService<SettlementRetries>().EmptyAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2 * ActualMicros, await SpentAsync(device));
    }

    [Fact]
    public async Task Without_a_share_two_fail_open_instances_overshoot_the_cap()
    {
        // Each instance assumes it is alone: what the gateway did before instances shared the remaining spend.
        var (spent, cap) = await SpendThroughOutageAsync(s => s["REDIS_FAILOPEN_INSTANCES"] = "1");
        output.WriteLine($"N=2, no share: {spent} micro-USD spent against a cap of {cap} ({(spent - cap) * 100 / cap}% over)");
        Assert.True(spent > cap, $"spent {spent} of {cap}");
    }

    [Fact]
    public async Task With_their_share_two_fail_open_instances_stay_within_the_cap()
    {
        var (spent, cap) = await SpendThroughOutageAsync(null);
        output.WriteLine($"N=2, shared: {spent} micro-USD spent against a cap of {cap}");
        Assert.True(spent <= cap, $"spent {spent} over the cap {cap}");
        Assert.True(spent >= cap / 2, $"spent {spent}: the share still lets the device work during the outage");
    }

    /// <summary>
    /// Two instances, one device with a $0.01 cap: one request through each while Redis is up, then Redis dies and
    /// requests alternate between the instances until neither admits. Returns what was spent and the cap, in micro-USD.
    /// </summary>
    private async Task<(long Spent, long Cap)> SpendThroughOutageAsync(Action<Dictionary<string, string?>>? configure)
    {
        const long cap = 10_000;
        var a = await GatewayAsync(configure);
        var b = await GatewayAsync(configure);
        if (configure is null)
        {
            // The live-instance count comes from the heartbeats; both must have counted each other.
            await EventuallyAsync(() => Instances(a) == 2 && Instances(b) == 2, "both instances count two live instances");
        }
        var device = TestSecrets.DeviceId();
        var token = CappedToken(device, cap / 1_000_000m);
        var admitted = 0;
        foreach (var gateway in new[] { a, b })
        {
            using var before = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: Usage));
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
            admitted++;
            await EventuallyAsync(async () => await SpentAsync(device) == admitted * ActualMicros, "settled in Redis");
        }

        var lostA = ConnectionEvent(h => a.Services.GetRequiredService<IConnectionMultiplexer>().ConnectionFailed += h);
        var lostB = ConnectionEvent(h => b.Services.GetRequiredService<IConnectionMultiplexer>().ConnectionFailed += h);
        await Redis.KillAsync();
        await Task.WhenAll(lostA, lostB).WaitAsync(TimeSpan.FromSeconds(20));
        for (var i = 0; i < 40; i++)
        {
            using var during = await (i % 2 == 0 ? a : b).Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: Usage));
            if (during.StatusCode == HttpStatusCode.OK)
            {
                admitted++;
            }
            else
            {
                await Http.AssertErrorAsync(during, 429, "rate_limit_error");
            }
        }
        return (admitted * ActualMicros, cap);
    }

    private static int? Instances(GatewayHost gateway) => gateway.Services.GetRequiredService<GatewayInstances>().LiveCount;

    private async Task<long> SpentAsync(string device)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Redis.ConnectionString);
        var period = SpendPeriods.Of(SpendPeriod.Month, DateTimeOffset.UtcNow).Id;
        var spent = await redis.GetDatabase().HashGetAsync(RedisAdmissionStore.SpendKey(device, period), "s");
        return spent.IsNull ? -1 : (long)spent;
    }

    private static Task EventuallyAsync(Func<bool> condition, string what) => EventuallyAsync(() => Task.FromResult(condition()), what);

    /// <summary>Waits for a state no event announces (a counter in Redis, a heartbeat count), checking it every 20 ms.</summary>
    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "timed out waiting until " + what);
            await Task.Delay(20);
        }
    }
}
