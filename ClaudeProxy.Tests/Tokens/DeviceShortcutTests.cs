using System.Net;
using System.Net.Sockets;
using System.Text;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>
/// Refusals that come before the body is read and without asking Redis: too many requests in flight for one
/// device on this instance, and a device this instance already knows to be out of requests until a reset.
/// </summary>
public sealed class DeviceShortcutTests(StackFixture fx) : IClassFixture<StackFixture>
{
    [Fact]
    public async Task A_device_with_too_many_requests_in_flight_is_refused_and_gets_its_slots_back()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["MAX_CONCURRENT_REQUESTS_PER_DEVICE"] = "2");
        var device = TestSecrets.DeviceId();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device);
        var inFlight = gateway.Services.GetRequiredService<ProxyHandler>().InFlight;

        // Refused and failed requests give their slot back.
        for (var i = 0; i < 3; i++)
        {
            using var bad = await gateway.Client.SendAsync(Http.Post("/v1/messages", "not json", bearer: token));
            await Http.AssertErrorAsync(bad, 400, "invalid_request_error");
        }
        Assert.Equal(0, inFlight.InFlight(device));

        var gate = Guid.NewGuid().ToString("N");
        var held = new List<(HttpResponseMessage Response, StreamReader Reader)>();
        for (var i = 0; i < 2; i++)
        {
            var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-hold", gate)),
                HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("event: message_start", await Http.ReadEventAsync(reader).WaitAsync(TimeSpan.FromSeconds(20)));
            held.Add((response, reader));
        }

        var marker = Guid.NewGuid().ToString("N");
        using (var third = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-test-marker", marker))))
        {
            var (_, message) = await Http.AssertErrorAsync(third, 429, "rate_limit_error");
            Assert.Contains("in flight", message);
            Assert.Equal("1", third.Headers.GetValues("retry-after").Single());
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
        using (var other = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId()))))
        {
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }

        fx.Simulator.State.Release(gate);
        foreach (var (response, reader) in held)
        {
            Assert.Contains("message_stop", await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20)));
            reader.Dispose();
            response.Dispose();
        }
        // The slots are released once each request's bookkeeping is done, just after its last byte.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (inFlight.InFlight(device) > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Equal(0, inFlight.InFlight(device));
        using var again = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    [Fact]
    public async Task A_device_known_to_be_out_of_requests_is_refused_before_its_body_without_asking_redis()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["RATE_LIMIT_WINDOW"] = "2000");
        var device = TestSecrets.DeviceId();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["rate_limit"] = 2 });
        for (var i = 0; i < 2; i++)
        {
            using var ok = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        DateTimeOffset reset;
        using (var limited = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
            reset = DateTimeOffset.Parse(limited.Headers.GetValues("anthropic-ratelimit-requests-reset").Single(), System.Globalization.CultureInfo.InvariantCulture);
        }

        var evals = await EvalsAsync();
        // The body is announced but never finished: the answer cannot be waiting for it.
        var head = await PartialBodyAsync(gateway.BaseUrl, token, """{"model":"claude-sonnet-4-5","max_tokens":""");
        Assert.StartsWith("HTTP/1.1 429", head);
        Assert.Contains("anthropic-ratelimit-requests-limit: 2", head, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("anthropic-ratelimit-requests-remaining: 0", head, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("retry-after: ", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(evals, await EvalsAsync());

        // The window is the behaviour under test: once the announced reset has passed, the device is asked about again.
        var wait = reset - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(250);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait);
        }
        using (var after = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        }

        // A token with another limit for the same device is a new question for Redis.
        evals = await EvalsAsync();
        var raised = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["rate_limit"] = 5 });
        using (var ok = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: raised)))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        Assert.True(await EvalsAsync() > evals);
    }

    [Theory]
    [InlineData(null, 32)]
    [InlineData("1", 1)]
    [InlineData("10000", 10000)]
    [InlineData("0", null)]
    [InlineData("10001", null)]
    [InlineData("-5", null)]
    [InlineData("lots", null)]
    public void The_in_flight_limit_is_read_within_its_range_or_stops_the_start(string? value, int? expected)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "sk-test",
            ["JWT_SECRET"] = TestSecrets.JwtSecret(),
            ["MAX_CONCURRENT_REQUESTS_PER_DEVICE"] = value,
        }).Build();
        if (expected is int limit)
        {
            Assert.Equal(limit, GatewayOptions.Load(config).MaxConcurrentRequestsPerDevice);
        }
        else
        {
            var error = Assert.Throws<GatewayConfigurationException>(() => GatewayOptions.Load(config));
            Assert.Contains("MAX_CONCURRENT_REQUESTS_PER_DEVICE", error.Message);
        }
    }

    /// <summary>Sends a request whose body stops short of its content-length, and returns the answer's head.</summary>
    private static async Task<string> PartialBodyAsync(Uri baseUrl, string token, string start)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(baseUrl.Host, baseUrl.Port).WaitAsync(TimeSpan.FromSeconds(10));
        var stream = client.GetStream();
        var request = $"POST /v1/messages HTTP/1.1\r\nHost: {baseUrl.Authority}\r\nAuthorization: Bearer {token}\r\nanthropic-version: 2023-06-01\r\n" +
            $"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{start}";
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request));
        var received = new StringBuilder();
        var buffer = new byte[4096];
        while (!received.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            if (read == 0)
            {
                break;
            }
            received.Append(Encoding.UTF8.GetString(buffer, 0, read));
        }
        return received.ToString();
    }

    private async Task<long> EvalsAsync()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString + ",allowAdmin=true");
        var info = (string)(await redis.GetDatabase().ExecuteAsync("INFO", "commandstats"))!;
        return info.Split('\n').Where(l => l.StartsWith("cmdstat_eval", StringComparison.Ordinal))
            .Sum(l => long.Parse(l.Split("calls=")[1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>The two per-instance structures alone: exact under contention, and bounded whatever devices come.</summary>
public sealed class DeviceShortcutStructureTests
{
    [Fact]
    public async Task In_flight_counts_never_pass_the_limit_under_contention_and_leave_nothing_behind()
    {
        var concurrency = new DeviceConcurrency(8);
        var inside = 0;
        var most = 0;
        var admitted = 0;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < 2_000; i++)
            {
                if (!concurrency.TryEnter("device"))
                {
                    continue;
                }
                Interlocked.Increment(ref admitted);
                var now = Interlocked.Increment(ref inside);
                InterlockedMax(ref most, now);
                await Task.Yield();
                Interlocked.Decrement(ref inside);
                concurrency.Exit("device");
            }
        }))).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.InRange(most, 1, 8);
        Assert.True(admitted > 0);
        Assert.Equal(0, concurrency.InFlight("device"));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    [Fact]
    public void Devices_known_to_be_out_of_requests_are_bounded_and_expire()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.Parse("2026-11-26T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var known = new RateLimitedDevices(time);
        Admission Refusal() => new(AdmissionOutcome.RateLimited, new RateDecision(false, 10, 0, time.GetUtcNow().AddSeconds(30), TimeSpan.FromSeconds(30)),
            TimeSpan.FromSeconds(30));
        var refusal = Refusal();
        for (var i = 0; i < RateLimitedDevices.MaxDevices * 2; i++)
        {
            known.Observe("device-" + i, refusal);
        }
        Assert.Equal(RateLimitedDevices.MaxDevices, known.Count);
        Assert.True(known.IsRefused("device-0", 10, out var decision));
        Assert.Equal(0, decision.Remaining);
        Assert.False(known.IsRefused("device-" + (RateLimitedDevices.MaxDevices + 1), 10, out _));

        // Once they have expired, a full map makes room for new refusals.
        time.Advance(TimeSpan.FromSeconds(31));
        for (var i = 0; i < RateLimitedDevices.MaxDevices; i++)
        {
            known.Observe("late-" + i, Refusal());
        }
        Assert.Equal(RateLimitedDevices.MaxDevices, known.Count);
        Assert.False(known.IsRefused("device-1", 10, out _));
        Assert.True(known.IsRefused("late-" + (RateLimitedDevices.MaxDevices - 1), 10, out _));
        Assert.False(known.IsRefused("late-0", 11, out _), "another limit is asked about again");

        Assert.True(known.IsRefused("late-1", 10, out _));
        known.Observe("late-1", new Admission(AdmissionOutcome.Admitted, default));
        Assert.False(known.IsRefused("late-1", 10, out _));
    }
}
