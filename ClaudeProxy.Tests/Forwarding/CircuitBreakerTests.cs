using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace ClaudeProxy.Tests.Forwarding;

public sealed class CircuitBreakerTests : RedisStackTests
{
    private const string OperatorKey = "operator-key-for-tests-0123456789";
    private static readonly TimeSpan StateTimeout = TimeSpan.FromSeconds(30);
    private const string ResetRoute = "/manage/v1/gateways/circuit-breaker/reset";

    private async Task<(GatewayHost Gateway, FakeTimeProvider Clock)> GatewayAsync(Action<Dictionary<string, string?>>? configure = null)
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var gateway = await StartGatewayAsync(
            s =>
            {
                s["ADMIN_API_KEY"] = OperatorKey;
                s["BREAKER_MINIMUM_THROUGHPUT"] = "4";
                s["BREAKER_FAILURE_RATIO"] = "0.5";
                s["BREAKER_SAMPLING_SECONDS"] = "60";
                s["BREAKER_BREAK_SECONDS"] = "30";
                configure?.Invoke(s);
            },
            b => b.Services.AddKeyedSingleton<TimeProvider>(UpstreamCircuitBreaker.TimeProviderKey, clock));
        return (gateway, clock);
    }

    private static Task<string> NextState(GatewayHost gateway)
    {
        var breaker = gateway.Services.GetRequiredService<UpstreamCircuitBreaker>();
        var next = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handler(string state)
        {
            breaker.StateChanged -= Handler;
            next.TrySetResult(state);
        }
        breaker.StateChanged += Handler;
        return next.Task;
    }

    private static async Task<string> StateAsync(GatewayHost gateway, string token)
    {
        using var response = await gateway.Client.SendAsync(Http.Get("/admin/circuit-breaker", bearer: token));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("state").GetString()!;
    }

    private static async Task OpenAsync(GatewayHost gateway, string token)
    {
        foreach (var status in new[] { "529", "503", "529", "503" })
        {
            using var failed = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", status)));
            Assert.Equal(int.Parse(status), (int)failed.StatusCode);
        }
    }

    [Fact]
    public async Task Opens_on_upstream_529_and_503_fails_fast_then_half_opens_and_closes()
    {
        var (gateway, clock) = await GatewayAsync();
        using var metrics = new MetricCapture(gateway.Services);
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());

        // 4xx answers do not count.
        for (var i = 0; i < 4; i++)
        {
            using var notAFailure = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", "400")));
            Assert.Equal(400, (int)notAFailure.StatusCode);
        }
        Assert.Equal("closed", await StateAsync(gateway, token));

        var opened = NextState(gateway);
        await OpenAsync(gateway, token);
        Assert.Equal("open", await opened.WaitAsync(StateTimeout));
        Assert.Equal("open", await StateAsync(gateway, token));

        var before = Simulator.State.ReceivedCount;
        using (var fast = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            var (_, message) = await Http.AssertErrorAsync(fast, 529, "overloaded_error");
            Assert.Contains("circuit breaker", message);
            Assert.InRange(int.Parse(fast.Headers.GetValues("retry-after").Single()), 1, 30);
        }
        Assert.Equal(before, Simulator.State.ReceivedCount);

        clock.Advance(TimeSpan.FromSeconds(31));
        var halfOpen = NextState(gateway);
        using (var probe = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, probe.StatusCode);
        }
        Assert.Equal("half-open", await halfOpen.WaitAsync(StateTimeout));
        Assert.Equal("closed", await StateAsync(gateway, token));
        Assert.Equal(before + 1, Simulator.State.ReceivedCount);

        Assert.True(metrics.Sum("claudeproxy.circuit_breaker.transitions", "state", "open") >= 1);
        Assert.True(metrics.Sum("claudeproxy.circuit_breaker.transitions", "state", "closed") >= 1);
        Assert.True(metrics.Sum("claudeproxy.requests.rejected", "reason", "circuit_open") >= 1);
        Assert.True(metrics.Sum("claudeproxy.requests.admitted", "route", "messages") >= 9);
    }

    [Fact]
    public async Task Reset_needs_the_operator_key_and_reaches_the_other_instance()
    {
        var (a, _) = await GatewayAsync();
        var (b, _) = await GatewayAsync();
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());
        await OpenAsync(b, token);
        Assert.Equal("open", await StateAsync(b, token));

        using var manage = new HttpClient { BaseAddress = a.ManagementUrl };
        using (var none = await manage.SendAsync(Http.Post(ResetRoute, "")))
        {
            await Http.AssertErrorAsync(none, 401, "authentication_error");
        }
        using (var wrong = await manage.SendAsync(Http.Post(ResetRoute, "", bearer: "not-the-key")))
        {
            await Http.AssertErrorAsync(wrong, 401, "authentication_error");
        }
        using (var device = await manage.SendAsync(Http.Post(ResetRoute, "", bearer: token)))
        {
            await Http.AssertErrorAsync(device, 403, "permission_error");
        }
        // The device API (proxy port) only shows the breaker; resetting it is the management API's alone.
        using (var onProxyPort = await a.Client.SendAsync(Http.Post("/admin/circuit-breaker/reset", "", bearer: OperatorKey)))
        {
            await Http.AssertErrorAsync(onProxyPort, 404, "not_found_error");
        }
        Assert.Equal("open", await StateAsync(b, token));

        var closedOnB = NextState(b);
        using (var reset = await manage.SendAsync(Http.Post(ResetRoute, "", bearer: OperatorKey)))
        {
            Assert.Equal(HttpStatusCode.NoContent, reset.StatusCode);
        }
        Assert.Equal("closed", await closedOnB.WaitAsync(TimeSpan.FromSeconds(10)));
        using var works = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, works.StatusCode);
    }

    [Fact]
    public async Task Connection_failures_count_an_unreachable_upstream_opens_the_breaker()
    {
        // Nothing listens on this port: every attempt is refused before any byte is sent.
        var closed = new Uri($"http://127.0.0.1:{RedisServer.FreePort()}");
        var (gateway, _) = await GatewayAsync(s => s["ANTHROPIC_BASE_URL"] = closed.ToString());
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());
        var opened = NextState(gateway);
        for (var i = 0; i < 4; i++)
        {
            using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            await Http.AssertErrorAsync(refused, 502, "api_error");
        }
        Assert.Equal("open", await opened.WaitAsync(StateTimeout));
        using var fast = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(fast, 529, "overloaded_error");
        Assert.Equal((4L, 0L), gateway.Services.GetRequiredService<UpstreamCircuitBreaker>().RecentCounts());
    }

    [Fact]
    public async Task An_upstream_silent_for_UPSTREAM_TIMEOUT_SECONDS_gets_504_timeout_error()
    {
        var (gateway, clock) = await GatewayAsync(s => s["UPSTREAM_TIMEOUT_SECONDS"] = "20");
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());
        var tag = Guid.NewGuid().ToString("N");
        var pending = gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: [("x-sim-hang", "1"), ("x-request-id", tag)]));
        var held = await ReceivedAsync(tag);

        // One second short of the timeout the request is still waiting; a request after it is answered meanwhile.
        clock.Advance(TimeSpan.FromSeconds(19));
        using (var other = await gateway.Client.SendAsync(Http.Post("/v1/messages/count_tokens", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }
        Assert.False(pending.IsCompleted, "the gateway gave up before UPSTREAM_TIMEOUT_SECONDS");
        Assert.False(held.Aborted.Task.IsCompleted, "the upstream request was cancelled before UPSTREAM_TIMEOUT_SECONDS");

        clock.Advance(TimeSpan.FromSeconds(1));
        using var timedOut = await pending.WaitAsync(TimeSpan.FromSeconds(30));
        var (_, message) = await Http.AssertErrorAsync(timedOut, 504, "timeout_error");
        Assert.Contains("did not answer in time", message);
        Assert.True(await held.Aborted.Task.WaitAsync(TimeSpan.FromSeconds(30)), "the upstream request must be cancelled when the gateway gives up on it");
    }

    [Fact]
    public async Task Timeouts_count_as_failures_and_open_the_breaker()
    {
        var (gateway, clock) = await GatewayAsync(s => s["UPSTREAM_TIMEOUT_SECONDS"] = "10");
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());
        var tags = Enumerable.Range(0, 4).Select(_ => Guid.NewGuid().ToString("N")).ToList();
        var pending = tags.Select(tag => gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token,
            headers: [("x-sim-hang", "1"), ("x-request-id", tag)]))).ToList();
        foreach (var tag in tags)
        {
            await ReceivedAsync(tag);
        }
        var opened = NextState(gateway);
        clock.Advance(TimeSpan.FromSeconds(10));
        foreach (var response in await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(30)))
        {
            using (response)
            {
                await Http.AssertErrorAsync(response, 504, "timeout_error");
            }
        }
        Assert.Equal("open", await opened.WaitAsync(StateTimeout));

        var before = Simulator.State.ReceivedCount;
        using var fast = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(fast, 529, "overloaded_error");
        Assert.Equal(before, Simulator.State.ReceivedCount);
    }

    [Fact]
    public async Task A_failed_half_open_probe_opens_the_breaker_again()
    {
        var (gateway, clock) = await GatewayAsync();
        var token = TokenForge.Make(JwtSecret, deviceId: TestSecrets.DeviceId());
        var opened = NextState(gateway);
        await OpenAsync(gateway, token);
        Assert.Equal("open", await opened.WaitAsync(StateTimeout));

        clock.Advance(TimeSpan.FromSeconds(31));
        var states = States(gateway, 2);
        using (var probe = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", "529"))))
        {
            Assert.Equal(529, (int)probe.StatusCode); // Anthropic's own 529, passed through
        }
        Assert.Equal(["half-open", "open"], await states.WaitAsync(StateTimeout));
        Assert.Equal("open", await StateAsync(gateway, token));

        // Open for a whole new break: nothing reaches Anthropic until it is over.
        var before = Simulator.State.ReceivedCount;
        clock.Advance(TimeSpan.FromSeconds(29));
        using (var fast = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            await Http.AssertErrorAsync(fast, 529, "overloaded_error");
        }
        Assert.Equal(before, Simulator.State.ReceivedCount);
        clock.Advance(TimeSpan.FromSeconds(2));
        using (var second = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }
        Assert.Equal("closed", await StateAsync(gateway, token));
    }

    /// <summary>The next <paramref name="count"/> state changes, in order.</summary>
    private static Task<string[]> States(GatewayHost gateway, int count)
    {
        var breaker = gateway.Services.GetRequiredService<UpstreamCircuitBreaker>();
        var seen = new List<string>();
        var done = new TaskCompletionSource<string[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handler(string state)
        {
            lock (seen)
            {
                seen.Add(state);
                if (seen.Count == count)
                {
                    breaker.StateChanged -= Handler;
                    done.TrySetResult([.. seen]);
                }
            }
        }
        breaker.StateChanged += Handler;
        return done.Task;
    }

    /// <summary>Waits until the simulator holds the request tagged <paramref name="tag"/>.</summary>
    private async Task<ClaudeProxy.AnthropicSimulator.RecordedRequest> ReceivedAsync(string tag)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (Simulator.State.Find("x-request-id", tag) is { } received)
            {
                return received;
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the simulator never received request {tag}");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Breaker_status_needs_a_device_token()
    {
        var (gateway, _) = await GatewayAsync();
        using var response = await gateway.Client.GetAsync("/admin/circuit-breaker");
        await Http.AssertErrorAsync(response, 401, "authentication_error");
    }
}
