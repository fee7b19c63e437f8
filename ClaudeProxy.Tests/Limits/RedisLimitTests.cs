using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Limits;

/// <summary>Limits shared through a real redis-server by two gateway instances.</summary>
public sealed class RedisLimitTests : RedisStackTests
{
    private string Token(string device, int rateLimit, int? tokenLimit = null)
    {
        var claims = new Dictionary<string, object> { ["rate_limit"] = rateLimit };
        if (tokenLimit is int t)
        {
            claims["token_limit"] = t;
        }
        return TokenForge.Make(JwtSecret, deviceId: device, claims: claims);
    }

    [Fact]
    public async Task Two_instances_admit_exactly_the_limit_under_concurrency()
    {
        using var metrics = new MetricCapture();
        // A window far longer than the burst takes, however slow the machine: the count under concurrency is what is
        // checked here, not the window sliding (the next test does that). 100 requests of one device at once on each
        // instance: the shared limit is under test, not the in-flight one.
        var a = await StartGatewayAsync(s => (s["RATE_LIMIT_WINDOW"], s["MAX_CONCURRENT_REQUESTS_PER_DEVICE"]) = ("600000", "1000"));
        var b = await StartGatewayAsync(s => (s["RATE_LIMIT_WINDOW"], s["MAX_CONCURRENT_REQUESTS_PER_DEVICE"]) = ("600000", "1000"));
        var token = Token(TestSecrets.DeviceId(), rateLimit: 50);

        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(async i =>
        {
            var gateway = i % 2 == 0 ? a : b;
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"model":"claude-sonnet-4-5","messages":[]}""", bearer: token));
            return (int)response.StatusCode;
        }));
        Assert.Equal(50, responses.Count(r => r == 200));
        Assert.Equal(150, responses.Count(r => r == 429));
        Assert.True(metrics.Sum("claudeproxy.requests.rejected", "reason", "rate_limit") >= 150);
    }

    [Fact]
    public async Task A_limited_device_is_admitted_again_once_the_announced_reset_has_passed()
    {
        // A window long enough that the third request surely falls inside it, however slow the machine: if it did not,
        // it would be admitted and fill the window again, and the check below would be testing nothing.
        var a = await StartGatewayAsync(s => s["RATE_LIMIT_WINDOW"] = "4000");
        var b = await StartGatewayAsync(s => s["RATE_LIMIT_WINDOW"] = "4000");
        var token = Token(TestSecrets.DeviceId(), rateLimit: 2);
        using (var first = await a.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }
        using (var second = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }
        using var limited = await a.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
        // The window is the behaviour under test: at the reset the gateway announced, the first admission has left it.
        var resetAt = DateTimeOffset.Parse(limited.Headers.GetValues("anthropic-ratelimit-requests-reset").Single(), System.Globalization.CultureInfo.InvariantCulture);
        var wait = resetAt - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(50);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait);
        }
        using var again = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    [Fact]
    public async Task The_rate_limit_claim_overrides_the_default_across_instances()
    {
        var a = await StartGatewayAsync();
        var b = await StartGatewayAsync();
        var token = Token(TestSecrets.DeviceId(), rateLimit: 3);
        foreach (var gateway in new[] { a, b, a })
        {
            using var ok = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var limited = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
        Assert.Equal("3", limited.Headers.GetValues("anthropic-ratelimit-requests-limit").Single());
        Assert.Equal("0", limited.Headers.GetValues("anthropic-ratelimit-requests-remaining").Single());
        Assert.True(int.Parse(limited.Headers.GetValues("retry-after").Single()) >= 1);
    }

    [Fact]
    public async Task The_token_budget_is_fed_by_usage_and_a_claim_can_raise_it()
    {
        var a = await StartGatewayAsync(s => s["TOKEN_LIMIT_PER_MINUTE"] = "100");
        var b = await StartGatewayAsync(s => s["TOKEN_LIMIT_PER_MINUTE"] = "100");
        var usage = new[] { ("x-sim-input-tokens", "70"), ("x-sim-output-tokens", "40") };
        var token = Token(TestSecrets.DeviceId(), rateLimit: 100);
        using (var first = await a.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: usage)))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            await first.Content.ReadAsStringAsync();
        }
        // Another instance sees the tokens once the first has settled them (within SETTLEMENT_DELAY_MS).
        await a.Services.GetRequiredService<Gateway.Limits.SettlementRetries>().SettledAsync(1).WaitAsync(TimeSpan.FromSeconds(10));
        using var second = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        var (_, message) = await Http.AssertErrorAsync(second, 429, "rate_limit_error");
        Assert.Contains("token budget", message);
        Assert.Equal("100", second.Headers.GetValues("anthropic-ratelimit-tokens-limit").Single());
        Assert.True(second.Headers.Contains("retry-after"));

        var generous = Token(TestSecrets.DeviceId(), rateLimit: 100, tokenLimit: 1000);
        for (var i = 0; i < 2; i++)
        {
            using var ok = await a.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: generous, headers: usage));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
    }

    [Fact]
    public async Task Bootstrap_flood_from_one_address_is_limited()
    {
        var a = await StartGatewayAsync(s => s["BOOTSTRAP_RATE_LIMIT"] = "5");
        var b = await StartGatewayAsync(s => s["BOOTSTRAP_RATE_LIMIT"] = "5");
        var statuses = new List<int>();
        for (var i = 0; i < 8; i++)
        {
            using var response = await (i % 2 == 0 ? a : b).Client.SendAsync(Http.Post("/bootstrap", $"{{\"device_id\":\"flood-{i}\"}}"));
            statuses.Add((int)response.StatusCode);
            if (i == 7)
            {
                await Http.AssertErrorAsync(response, 429, "rate_limit_error");
                Assert.True(response.Headers.Contains("retry-after"));
            }
        }
        Assert.Equal([200, 200, 200, 200, 200, 429, 429, 429], statuses);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_device_id_shaped_like_an_address_key_never_shares_that_address_limit(bool withRedis)
    {
        var gateway = await StartGatewayAsync(s =>
        {
            s["BOOTSTRAP_RATE_LIMIT"] = "2";
            if (!withRedis)
            {
                s["REDIS_URL"] = "";
            }
        });
        // The per-address bootstrap limit's key is "ip:" and the address; a device may be called exactly that.
        var token = Token("ip:127.0.0.1", rateLimit: 100);
        for (var i = 0; i < 3; i++)
        {
            using var spent = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, spent.StatusCode);
        }
        for (var i = 0; i < 2; i++)
        {
            using var bootstrap = await gateway.Client.SendAsync(Http.Post("/bootstrap", $"{{\"device_id\":\"neighbour-{i}\"}}"));
            Assert.Equal(HttpStatusCode.OK, bootstrap.StatusCode);
        }
        using var third = await gateway.Client.SendAsync(Http.Post("/bootstrap", """{"device_id":"neighbour-3"}"""));
        await Http.AssertErrorAsync(third, 429, "rate_limit_error");
        using var device = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, device.StatusCode);
    }

    [Fact]
    public async Task Open_mode_falls_back_in_process_reports_degraded_and_returns_to_redis()
    {
        var gateway = await StartGatewayAsync(s => s["REDIS_FAILURE_MODE"] = "open");
        using var metrics = new MetricCapture(gateway.Services);
        var device = TestSecrets.DeviceId();
        var token = Token(device, rateLimit: 100);
        using (var before = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }
        Assert.Equal(1, await CountAsync(device));

        var multiplexer = (IConnectionMultiplexer)gateway.Services.GetService(typeof(IConnectionMultiplexer))!;
        var lost = ConnectionEvent(h => multiplexer.ConnectionFailed += h);
        await Redis.KillAsync();
        await lost.WaitAsync(TimeSpan.FromSeconds(20));

        for (var i = 0; i < 3; i++)
        {
            using var during = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, during.StatusCode);
        }
        using (var ready = await gateway.Client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
            Assert.Equal("Degraded", json.RootElement.GetProperty("status").GetString());
        }
        Assert.Single(gateway.Logs.Lines, l => l.Contains("Redis is unavailable") && l.Contains("in this process"));
        Assert.True(metrics.Sum("claudeproxy.redis.fallbacks") >= 3);

        var restored = ConnectionEvent(h => multiplexer.ConnectionRestored += h);
        await Redis.StartAgainAsync();
        await restored.WaitAsync(TimeSpan.FromSeconds(30));
        using (var after = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        }
        // The restarted Redis is empty: the one admission it holds is the one made after it came back.
        Assert.Equal(1, await CountAsync(device));
        // The instance heartbeat retries with backoff: /readyz is healthy once it has written to the restarted Redis.
        await gateway.Services.GetRequiredService<BackgroundHealth>().WaitForAsync(GatewayInstances.Service, failing: false).WaitAsync(TimeSpan.FromSeconds(30));
        using var readyAgain = await gateway.Client.GetAsync("/readyz");
        using var again = JsonDocument.Parse(await readyAgain.Content.ReadAsStringAsync());
        Assert.Equal("Healthy", again.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Closed_mode_refuses_with_503_while_redis_is_down_and_recovers_by_itself()
    {
        var gateway = await StartGatewayAsync(s => s["REDIS_FAILURE_MODE"] = "closed");
        var token = Token(TestSecrets.DeviceId(), rateLimit: 100);
        var multiplexer = (IConnectionMultiplexer)gateway.Services.GetService(typeof(IConnectionMultiplexer))!;
        using (var before = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        var lost = ConnectionEvent(h => multiplexer.ConnectionFailed += h);
        await Redis.KillAsync();
        await lost.WaitAsync(TimeSpan.FromSeconds(20));
        var marker = Guid.NewGuid().ToString("N");
        using (var during = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-test-marker", marker))))
        {
            await Http.AssertErrorAsync(during, 503, "api_error");
        }
        Assert.Null(Simulator.State.Find("x-test-marker", marker));
        using (var ready = await gateway.Client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }

        var restored = ConnectionEvent(h => multiplexer.ConnectionRestored += h);
        await Redis.StartAgainAsync();
        await restored.WaitAsync(TimeSpan.FromSeconds(30));
        using var after = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    private async Task<long> CountAsync(string device)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Redis.ConnectionString);
        return await redis.GetDatabase().SortedSetLengthAsync("cp:{" + device + "}:rl");
    }
}
