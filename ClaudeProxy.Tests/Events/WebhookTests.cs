using System.Net;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Events;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Events;

/// <summary>
/// Events reach operators: a receiver gets each event once, signed per Standard Webhooks (verified here as a receiver
/// would), spend thresholds are told once per period even when two instances cross together, failing receivers get
/// the delivery later, Slack gets one readable line, resend sends the same event again, and bad input writes nothing.
/// </summary>
public sealed class WebhookTests(StackFixture fx) : IClassFixture<StackFixture>
{
    // Haiku 4.5 at $1 per million input tokens: x-sim-input-tokens sets what a request costs.
    private const string Haiku = """{"model":"claude-haiku-4-5-20251001","max_tokens":12,"messages":[{"role":"user","content":"Hi"}]}""";

    private Task<GatewayHost> GatewayAsync(string db) => fx.GatewayAsync(db, s =>
    {
        s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
        s["WEBHOOK_POLL_MS"] = "200";
        s["WEBHOOK_RETRY_INITIAL_MS"] = "100";
        s["WEBHOOK_RETRY_MAX_MS"] = "300";
        s["WEBHOOK_TIMEOUT_SECONDS"] = "5";
    });

    private static HttpClient Manage(GatewayHost gateway)
    {
        var client = new HttpClient { BaseAddress = gateway.ManagementUrl };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        return client;
    }

    private static StringContent Json(object value) => new(JsonSerializer.Serialize(value), Encoding.UTF8, "application/json");

    private static StringContent Raw(string text) => new(text, Encoding.UTF8, "application/json");

    private static async Task<(string Id, string Secret)> CreateAsync(GatewayHost gateway, WebhookReceiver receiver, string[] events, string format = "json")
    {
        using var manage = Manage(gateway);
        using var created = await manage.PostAsync("/manage/v1/webhooks", Json(new { url = receiver.Url.ToString(), events, format, description = "test" }));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var json = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement;
        return (json.GetProperty("webhook_id").GetString()!, json.GetProperty("secret").GetString()!);
    }

    private static async Task<JsonElement> DeliveriesAsync(GatewayHost gateway, string webhookId)
    {
        using var manage = Manage(gateway);
        return JsonDocument.Parse(await manage.GetStringAsync($"/manage/v1/webhooks/{webhookId}/deliveries")).RootElement.GetProperty("data");
    }

    private string DeviceToken(string deviceId, decimal cap) =>
        TokenForge.Make(fx.JwtSecret, deviceId: deviceId, claims: new Dictionary<string, object> { ["spend_cap"] = (double)cap, ["rate_limit"] = 1000 });

    /// <summary>A request that costs about <paramref name="inputTokens"/> millionths of a dollar; returns its status.</summary>
    private static async Task<HttpStatusCode> SpendAsync(GatewayHost gateway, string token, int inputTokens)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Haiku, bearer: token, headers: ("x-sim-input-tokens", inputTokens.ToString())));
        await response.Content.ReadAsStringAsync();
        return response.StatusCode;
    }

    [Fact]
    public async Task A_device_cap_passing_50_80_and_100_percent_is_delivered_once_each_signed()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        var (_, secret) = await CreateAsync(gateway, receiver, [EventTypes.SpendThresholdCrossed]);
        var device = TestSecrets.DeviceId();
        var token = DeviceToken(device, 100m);

        // Each crossing is seen by the next request's admission (what is spent before it).
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 55_000_000));
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 10));
        var fifty = await receiver.NextAsync();
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 30_000_000));
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 10));
        var eighty = await receiver.NextAsync();
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 20_000_000));
        Assert.Equal(HttpStatusCode.TooManyRequests, await SpendAsync(gateway, token, 10));
        var hundred = await receiver.NextAsync();

        foreach (var (received, threshold) in new[] { (fifty, 50), (eighty, 80), (hundred, 100) })
        {
            Assert.True(received.SignedWith(secret), $"the {threshold} % delivery's signature verifies");
            Assert.Equal(received.Id, received.Json.GetProperty("id").GetString());
            Assert.Equal(EventTypes.SpendThresholdCrossed, received.Type);
            var data = received.Json.GetProperty("data");
            Assert.Equal(threshold, data.GetProperty("threshold").GetInt32());
            Assert.Equal("device", data.GetProperty("scope").GetString());
            Assert.Equal(device, data.GetProperty("device_id").GetString());
            Assert.Equal(100m, data.GetProperty("cap_usd").GetDecimal());
            Assert.True(Math.Abs(long.Parse(received.Timestamp) - DateTimeOffset.UtcNow.ToUnixTimeSeconds()) < 300);
        }
        // More requests past the cap tell nothing new.
        Assert.NotEqual(HttpStatusCode.OK, await SpendAsync(gateway, token, 10));
        using var manage = Manage(gateway);
        var events = JsonDocument.Parse(await manage.GetStringAsync("/manage/v1/events?type=spend.threshold_crossed")).RootElement;
        Assert.Equal(3, events.GetProperty("total").GetInt32());
    }

    [Fact]
    public async Task Two_instances_crossing_80_percent_together_deliver_one_event()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var a = await GatewayAsync(db);
        var b = await GatewayAsync(db);
        await using var receiver = await WebhookReceiver.StartAsync();
        var (webhookId, secret) = await CreateAsync(a, receiver, [EventTypes.SpendThresholdCrossed]);
        var token = DeviceToken(TestSecrets.DeviceId(), 1.00m);
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(a, token, 850_000));

        var storedA = a.Services.GetRequiredService<EventWriter>().Stored;
        var storedB = b.Services.GetRequiredService<EventWriter>().Stored;
        var both = await Task.WhenAll(SpendAsync(a, token, 10), SpendAsync(b, token, 10));
        Assert.All(both, s => Assert.Equal(HttpStatusCode.OK, s));
        // Each instance saw 50 and 80 % and stored (or found stored) both.
        await a.Services.GetRequiredService<EventWriter>().WaitForStoredAsync(storedA + 2).WaitAsync(TimeSpan.FromSeconds(30));
        await b.Services.GetRequiredService<EventWriter>().WaitForStoredAsync(storedB + 2).WaitAsync(TimeSpan.FromSeconds(30));

        var received = new[] { await receiver.NextAsync(), await receiver.NextAsync() };
        Assert.Equal([50, 80], received.Select(r => r.Json.GetProperty("data").GetProperty("threshold").GetInt32()).Order());
        Assert.All(received, r => Assert.True(r.SignedWith(secret)));
        var deliveries = await DeliveriesAsync(a, webhookId);
        Assert.Equal(2, deliveries.GetArrayLength());
        Assert.Equal(2L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM gateway_events WHERE type = 'spend.threshold_crossed'"));
        Assert.Empty(receiver.Drain());
    }

    [Fact]
    public async Task Enrolment_waiting_approval_and_a_persons_deactivation_and_reactivation_are_delivered()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            (s["WEBHOOK_POLL_MS"], s["WEBHOOK_RETRY_INITIAL_MS"], s["WEBHOOK_RETRY_MAX_MS"]) = ("200", "100", "300");
            s["BOOTSTRAP_MODE"] = "approval";
        });
        await using var receiver = await WebhookReceiver.StartAsync();
        var (_, secret) = await CreateAsync(gateway, receiver,
            [EventTypes.DevicePendingApproval, EventTypes.DeviceApproved, EventTypes.DeviceEnrolled, EventTypes.UserDeactivated, EventTypes.UserReactivated]);
        using var manage = Manage(gateway);

        // A new laptop asks for a token and waits for an operator.
        var laptop = TestSecrets.DeviceId("pending");
        using (var pending = await gateway.Client.PostAsync("/bootstrap", Json(new { device_id = laptop })))
        {
            await Http.AssertErrorAsync(pending, 401, "authentication_error");
        }
        var waiting = await receiver.NextAsync();
        (await manage.PostAsync($"/manage/v1/devices/{laptop}/approve", null)).EnsureSuccessStatusCode();
        var approved = await receiver.NextAsync();
        // An operator registers another by hand.
        var registeredId = TestSecrets.DeviceId("registered");
        (await manage.PostAsync("/manage/v1/devices", Json(new { device_id = registeredId }))).EnsureSuccessStatusCode();
        var registered = await receiver.NextAsync();
        // A person leaves the company, and comes back.
        var user = "usr_" + Guid.NewGuid().ToString("N")[..16];
        await fx.ExecuteAsync(db, "INSERT INTO users (user_id, issuer, subject, email, name, groups, status, first_seen, last_seen) " +
            $"VALUES ('{user}', 'https://idp', '{user}', 'leaver@example.com', 'Leaver', '{{}}', 'active', now(), now())");
        (await manage.PostAsync($"/manage/v1/users/{user}/deactivate", null)).EnsureSuccessStatusCode();
        var deactivated = await receiver.NextAsync();
        (await manage.PostAsync($"/manage/v1/users/{user}/reactivate", null)).EnsureSuccessStatusCode();
        var reactivated = await receiver.NextAsync();

        Assert.Equal([EventTypes.DevicePendingApproval, EventTypes.DeviceApproved, EventTypes.DeviceEnrolled, EventTypes.UserDeactivated, EventTypes.UserReactivated],
            new[] { waiting.Type, approved.Type, registered.Type, deactivated.Type, reactivated.Type });
        Assert.All(new[] { waiting, approved, registered, deactivated, reactivated }, r => Assert.True(r.SignedWith(secret)));
        Assert.Equal(laptop, waiting.Json.GetProperty("data").GetProperty("device_id").GetString());
        Assert.Equal(laptop, approved.Json.GetProperty("data").GetProperty("device_id").GetString());
        Assert.Equal(registeredId, registered.Json.GetProperty("data").GetProperty("device_id").GetString());
        Assert.Equal(user, deactivated.Json.GetProperty("data").GetProperty("user_id").GetString());
        Assert.Equal(user, reactivated.Json.GetProperty("data").GetProperty("user_id").GetString());
        // Each told once.
        Assert.Empty(receiver.Drain());
    }

    [Fact]
    public async Task Revoking_and_restoring_a_device_and_changing_its_policy_are_delivered()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        var (_, secret) = await CreateAsync(gateway, receiver, [EventTypes.DeviceRevoked, EventTypes.DeviceRestored, EventTypes.PolicyChanged]);
        using var manage = Manage(gateway);
        var device = TestSecrets.DeviceId();
        using (var registered = await manage.PostAsync("/manage/v1/devices", Json(new { device_id = device, models = new[] { "claude-*" }, rate_limit = 10 })))
        {
            Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        }
        manage.DefaultRequestHeaders.Add("x-operator", "alice");
        (await manage.PostAsync($"/manage/v1/devices/{device}/revoke", null)).EnsureSuccessStatusCode();
        var revoked = await receiver.NextAsync();
        (await manage.PostAsync($"/manage/v1/devices/{device}/restore", null)).EnsureSuccessStatusCode();
        var restored = await receiver.NextAsync();
        (await manage.PutAsync($"/manage/v1/devices/{device}/policy", Json(new { models = new[] { "claude-haiku-*" }, rate_limit = 5 }))).EnsureSuccessStatusCode();
        var policy = await receiver.NextAsync();

        Assert.Equal([EventTypes.DeviceRevoked, EventTypes.DeviceRestored, EventTypes.PolicyChanged], new[] { revoked.Type, restored.Type, policy.Type });
        Assert.All(new[] { revoked, restored, policy }, r => Assert.True(r.SignedWith(secret)));
        Assert.Equal(device, revoked.Json.GetProperty("data").GetProperty("device_id").GetString());
        Assert.Equal("alice", revoked.Json.GetProperty("data").GetProperty("actor").GetString());
        Assert.Equal(device, policy.Json.GetProperty("data").GetProperty("target").GetString());
        // A refused write (the device is active already) announces nothing.
        using var refused = await manage.PostAsync($"/manage/v1/devices/{device}/restore", null);
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        (await manage.PostAsync($"/manage/v1/devices/{device}/revoke", null)).EnsureSuccessStatusCode();
        Assert.Equal(EventTypes.DeviceRevoked, (await receiver.NextAsync()).Type);
    }

    [Fact]
    public async Task The_circuit_breaker_opening_and_closing_is_delivered()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s =>
        {
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            (s["WEBHOOK_POLL_MS"], s["BREAKER_MINIMUM_THROUGHPUT"], s["BREAKER_FAILURE_RATIO"], s["BREAKER_BREAK_SECONDS"]) = ("200", "4", "0.5", "30");
        });
        await using var receiver = await WebhookReceiver.StartAsync();
        var (_, secret) = await CreateAsync(gateway, receiver, [EventTypes.CircuitBreakerOpened, EventTypes.CircuitBreakerClosed]);
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId());
        foreach (var status in new[] { "529", "503", "529", "503" })
        {
            using var failed = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", status)));
            Assert.Equal(int.Parse(status), (int)failed.StatusCode);
        }
        var opened = await receiver.NextAsync();
        Assert.Equal(EventTypes.CircuitBreakerOpened, opened.Type);
        Assert.True(opened.SignedWith(secret));
        using var manage = Manage(gateway);
        (await manage.PostAsync("/manage/v1/gateways/circuit-breaker/reset", null)).EnsureSuccessStatusCode();
        var closed = await receiver.NextAsync();
        Assert.Equal(EventTypes.CircuitBreakerClosed, closed.Type);
        Assert.Equal(opened.Json.GetProperty("data").GetProperty("instance").GetString(), closed.Json.GetProperty("data").GetProperty("instance").GetString());
    }

    [Fact]
    public async Task A_test_event_is_delivered_signed_and_resent_with_the_same_event_id()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        var (webhookId, secret) = await CreateAsync(gateway, receiver, ["*"]);
        using var manage = Manage(gateway);
        using var test = await manage.PostAsync($"/manage/v1/webhooks/{webhookId}/test", null);
        Assert.Equal(HttpStatusCode.Accepted, test.StatusCode);
        var sent = JsonDocument.Parse(await test.Content.ReadAsStringAsync()).RootElement;
        var first = await receiver.NextOfAsync(EventTypes.WebhookTest);
        Assert.True(first.SignedWith(secret));
        Assert.Equal(sent.GetProperty("event_id").GetString(), first.Id);
        Assert.Equal(webhookId, first.Json.GetProperty("data").GetProperty("webhook_id").GetString());
        Assert.False(first.SignedWith("whsec_" + Convert.ToBase64String(new byte[32])), "another secret does not verify it");

        var deliveryId = sent.GetProperty("delivery_id").GetInt64();
        await WaitForStatusAsync(gateway, webhookId, deliveryId, "delivered");
        // Two resends at once: one sends again, the other finds it waiting already. The endpoint is disabled meanwhile,
        // so the first cannot be sent (and done) before the second arrives.
        (await manage.PutAsync($"/manage/v1/webhooks/{webhookId}", Json(new { enabled = false }))).EnsureSuccessStatusCode();
        var resends = await Task.WhenAll(
            manage.PostAsync($"/manage/v1/webhooks/deliveries/{deliveryId}/resend", null),
            manage.PostAsync($"/manage/v1/webhooks/deliveries/{deliveryId}/resend", null));
        Assert.Equal([HttpStatusCode.Accepted, HttpStatusCode.Conflict], resends.Select(r => r.StatusCode).Order());
        (await manage.PutAsync($"/manage/v1/webhooks/{webhookId}", Json(new { enabled = true }))).EnsureSuccessStatusCode();
        var again = await receiver.NextOfAsync(EventTypes.WebhookTest);
        Assert.Equal(first.Id, again.Id);
        Assert.Equal(first.Json.GetProperty("data").ToString(), again.Json.GetProperty("data").ToString());
        Assert.True(again.SignedWith(secret));

        using var missing = await manage.PostAsync("/manage/v1/webhooks/deliveries/999999999/resend", null);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using var malformed = await manage.PostAsync("/manage/v1/webhooks/deliveries/-1/resend", null);
        await Http.AssertErrorAsync(malformed, 400, "invalid_request_error");
    }

    private static async Task<JsonElement> WaitForStatusAsync(GatewayHost gateway, string webhookId, long deliveryId, string status)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            // The dispatcher records the outcome just after the receiver answers: poll the log briefly.
            var delivery = (await DeliveriesAsync(gateway, webhookId)).EnumerateArray().First(d => d.GetProperty("delivery_id").GetInt64() == deliveryId);
            if (delivery.GetProperty("status").GetString() == status)
            {
                return delivery;
            }
            await Task.Delay(50, cts.Token);
        }
    }

    [Fact]
    public async Task A_receiver_that_fails_for_a_while_gets_the_delivery_later_and_the_log_shows_the_attempts()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        var answered = 0;
        receiver.Answer = () => Interlocked.Increment(ref answered) <= 3 ? 500 : 204;
        var (webhookId, secret) = await CreateAsync(gateway, receiver, [EventTypes.WebhookTest]);
        using var manage = Manage(gateway);
        using var test = await manage.PostAsync($"/manage/v1/webhooks/{webhookId}/test", null);
        var deliveryId = JsonDocument.Parse(await test.Content.ReadAsStringAsync()).RootElement.GetProperty("delivery_id").GetInt64();

        var attempts = new List<ReceivedWebhook>();
        for (var i = 0; i < 4; i++)
        {
            attempts.Add(await receiver.NextAsync());
        }
        Assert.Equal([500, 500, 500, 204], attempts.Select(a => a.AnsweredWith));
        Assert.Single(attempts.Select(a => a.Id).Distinct());
        Assert.All(attempts, a => Assert.True(a.SignedWith(secret)));
        var delivery = await WaitForStatusAsync(gateway, webhookId, deliveryId, "delivered");
        Assert.Equal(4, delivery.GetProperty("attempts").GetInt32());
        Assert.Equal(204, delivery.GetProperty("last_status_code").GetInt32());
        Assert.Equal(EventTypes.WebhookTest, delivery.GetProperty("event_type").GetString());
    }

    [Fact]
    public async Task A_delivery_past_its_retry_window_is_failed_with_its_last_answer()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s =>
        {
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            (s["WEBHOOK_POLL_MS"], s["WEBHOOK_RETRY_INITIAL_MS"], s["WEBHOOK_RETRY_MAX_MS"], s["WEBHOOK_RETRY_HOURS"]) = ("100", "100", "200", "0.0002");
        });
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Answer = () => 503;
        var (webhookId, _) = await CreateAsync(gateway, receiver, [EventTypes.WebhookTest]);
        using var manage = Manage(gateway);
        using var test = await manage.PostAsync($"/manage/v1/webhooks/{webhookId}/test", null);
        var deliveryId = JsonDocument.Parse(await test.Content.ReadAsStringAsync()).RootElement.GetProperty("delivery_id").GetInt64();
        var failed = await WaitForStatusAsync(gateway, webhookId, deliveryId, "failed");
        Assert.Equal(503, failed.GetProperty("last_status_code").GetInt32());
        Assert.True(failed.GetProperty("attempts").GetInt32() >= 2);
    }

    [Fact]
    public async Task The_slack_format_sends_exactly_a_text_with_the_readable_line()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        await CreateAsync(gateway, receiver, [EventTypes.SpendThresholdCrossed], format: "slack");
        var device = TestSecrets.DeviceId();
        var token = DeviceToken(device, 2000m);
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 1_612_400_000));
        Assert.Equal(HttpStatusCode.OK, await SpendAsync(gateway, token, 10));
        var first = await receiver.NextAsync();
        var second = await receiver.NextAsync();
        var texts = new[] { first, second }.Select(r =>
        {
            var json = r.Json;
            Assert.Equal(["text"], json.EnumerateObject().Select(p => p.Name));
            return json.GetProperty("text").GetString()!;
        }).Order().ToList();
        // 1,612,400,000 tokens at $1 a million and 12 output tokens at $5 a million.
        Assert.Equal($":warning: Device {device}'s spend cap passed 50 % of $2,000.00 this month ($1,612.40 spent).", texts[0]);
        Assert.Equal($":warning: Device {device}'s spend cap passed 80 % of $2,000.00 this month ($1,612.40 spent).", texts[1]);
    }

    public static TheoryData<string, string> HostileBodies => new()
    {
        { """{"url":"javascript:alert(1)","events":["*"]}""", "url" },
        { """{"url":"file:///etc/passwd","events":["*"]}""", "url" },
        { """{"url":"/relative/path","events":["*"]}""", "url" },
        { """{"url":"ftp://example.com/x","events":["*"]}""", "url" },
        { """{"url":"https://user:pw@example.com/x","events":["*"]}""", "credentials" },
        { """{"url":"https://example.com/ x","events":["*"]}""", "url" },
        { "{\"url\":\"https://example.com/" + new string('a', 3000) + "\",\"events\":[\"*\"]}", "url" },
        { """{"events":["*"]}""", "url" },
        { """{"url":"https://example.com/x"}""", "events" },
        { """{"url":"https://example.com/x","events":[]}""", "events" },
        { """{"url":"https://example.com/x","events":["device.exploded"]}""", "unknown event type" },
        { """{"url":"https://example.com/x","events":[null]}""", "unknown event type" },
        { """{"url":"https://example.com/x","events":"*"}""", "JSON object" },
        { """{"url":42,"events":["*"]}""", "JSON object" },
        { """{"url":"https://example.com/x","events":["*"],"enabled":"yes"}""", "JSON object" },
        { """{"url":"https://example.com/x","events":["*"],"format":"xml"}""", "format" },
        { """{"url":"https://example.com/x","events":["*"],"secret":"hunter2"}""", "secret" },
        { """{"url":"https://example.com/x","events":["*"],"secret":"whsec_!!!"}""", "secret" },
        { """{"url":"https://example.com/x","events":["*"],"description":"a\u0000b"}""", "description" },
        { "[1,2,3]", "JSON object" },
        { "not json", "JSON object" },
        { "null", "JSON object" },
    };

    [Theory]
    [MemberData(nameof(HostileBodies))]
    public async Task Hostile_input_is_refused_with_400_and_writes_nothing(string body, string mentions)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        using var manage = Manage(gateway);
        using var response = await manage.PostAsync("/manage/v1/webhooks", Raw(body));
        var (_, message) = await Http.AssertErrorAsync(response, 400, "invalid_request_error");
        Assert.Contains(mentions, message);
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM webhook_endpoints"));
    }

    [Fact]
    public async Task Bad_ids_huge_bodies_and_bad_updates_are_refused_and_change_nothing()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await GatewayAsync(db);
        await using var receiver = await WebhookReceiver.StartAsync();
        var (webhookId, _) = await CreateAsync(gateway, receiver, [EventTypes.WebhookTest]);
        using var manage = Manage(gateway);

        using var huge = await manage.PostAsync("/manage/v1/webhooks", Raw("{\"url\":\"https://example.com/x\",\"description\":\"" + new string('a', 200_000) + "\",\"events\":[\"*\"]}"));
        await Http.AssertErrorAsync(huge, 413, "request_too_large");
        foreach (var bad in new[] { "nope", "wh_UPPERCASE000000000", "wh_' OR 1=1 --", "wh_" + new string('a', 500) })
        {
            using var get = await manage.GetAsync($"/manage/v1/webhooks/{Uri.EscapeDataString(bad)}");
            await Http.AssertErrorAsync(get, 400, "invalid_request_error");
        }
        using (var unknown = await manage.GetAsync("/manage/v1/webhooks/wh_0000000000000000"))
        {
            await Http.AssertErrorAsync(unknown, 404, "not_found_error");
        }
        using (var badUpdate = await manage.PutAsync($"/manage/v1/webhooks/{webhookId}", Raw("""{"url":"javascript:x"}""")))
        {
            await Http.AssertErrorAsync(badUpdate, 400, "invalid_request_error");
        }
        using (var badEvents = await manage.PutAsync($"/manage/v1/webhooks/{webhookId}", Raw("""{"events":["nope"]}""")))
        {
            await Http.AssertErrorAsync(badEvents, 400, "invalid_request_error");
        }
        using (var badType = await manage.GetAsync("/manage/v1/events?type=nope"))
        {
            await Http.AssertErrorAsync(badType, 400, "invalid_request_error");
        }
        var stored = JsonDocument.Parse(await manage.GetStringAsync($"/manage/v1/webhooks/{webhookId}")).RootElement;
        Assert.Equal(receiver.Url.ToString(), stored.GetProperty("url").GetString());
        Assert.Equal([EventTypes.WebhookTest], stored.GetProperty("events").EnumerateArray().Select(e => e.GetString()));

        using (var disable = await manage.PutAsync($"/manage/v1/webhooks/{webhookId}", Json(new { enabled = false, events = new[] { "*" } })))
        {
            disable.EnsureSuccessStatusCode();
        }
        using (var test = await manage.PostAsync($"/manage/v1/webhooks/{webhookId}/test", null))
        {
            Assert.Equal(HttpStatusCode.Conflict, test.StatusCode);
        }
        using (var delete = await manage.DeleteAsync($"/manage/v1/webhooks/{webhookId}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM webhook_endpoints"));
    }

    [Fact]
    public async Task The_secret_is_whole_only_in_the_create_answer_and_never_logged()
    {
        var gateway = await GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        await using var receiver = await WebhookReceiver.StartAsync();
        var (webhookId, secret) = await CreateAsync(gateway, receiver, [EventTypes.WebhookTest]);
        Assert.StartsWith("whsec_", secret);
        using var manage = Manage(gateway);
        var got = JsonDocument.Parse(await manage.GetStringAsync($"/manage/v1/webhooks/{webhookId}")).RootElement.GetProperty("secret").GetString()!;
        Assert.Equal("whsec_…" + secret[^4..], got);
        var listed = await manage.GetStringAsync("/manage/v1/webhooks");
        Assert.DoesNotContain(secret, listed);
        using (await manage.PostAsync($"/manage/v1/webhooks/{webhookId}/test", null))
        {
        }
        Assert.True((await receiver.NextAsync()).SignedWith(secret));
        var audit = await manage.GetStringAsync("/manage/v1/audit");
        Assert.DoesNotContain(secret[6..], audit);
        Assert.DoesNotContain(gateway.Logs.Lines, line => line.Contains(secret[6..], StringComparison.Ordinal));
    }
}
