using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Management;

public sealed class ManagementApiTests(StackFixture fx) : IClassFixture<StackFixture>
{
    public const string OperatorKey = TestSecrets.OperatorKey;

    private async Task<(GatewayHost Gateway, HttpClient Manage, string Db)> StartAsync(Action<Dictionary<string, string?>>? configure = null)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["ADMIN_API_KEY"] = OperatorKey;
            configure?.Invoke(s);
        });
        return (gateway, Manage(gateway), db);
    }

    private static HttpClient Manage(GatewayHost gateway)
    {
        var client = new HttpClient { BaseAddress = gateway.ManagementUrl };
        client.DefaultRequestHeaders.Authorization = new("Bearer", OperatorKey);
        client.DefaultRequestHeaders.Add("x-operator", "ops@acme");
        return client;
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response, HttpStatusCode status = HttpStatusCode.OK)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task The_operator_key_is_required_and_a_device_token_is_not_enough()
    {
        var (gateway, _, _) = await StartAsync();
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var anonymous = new HttpClient { BaseAddress = gateway.ManagementUrl };
        using (var none = await anonymous.GetAsync("/manage/v1/devices"))
        {
            await Http.AssertErrorAsync(none, 401, "authentication_error");
        }
        using (var wrong = await anonymous.SendAsync(Http.Get("/manage/v1/devices", bearer: "wrong-key")))
        {
            await Http.AssertErrorAsync(wrong, 401, "authentication_error");
        }
        using (var device = await anonymous.SendAsync(Http.Get("/manage/v1/devices", bearer: token)))
        {
            await Http.AssertErrorAsync(device, 403, "permission_error");
        }
        // The proxy port does not serve the management API at all, and the management port serves no proxy routes.
        using (var onProxyPort = await gateway.Client.SendAsync(Http.Get("/manage/v1/devices", bearer: OperatorKey)))
        {
            await Http.AssertErrorAsync(onProxyPort, 404, "not_found_error");
        }
        using (var proxyOnManagement = await anonymous.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            await Http.AssertErrorAsync(proxyOnManagement, 404, "not_found_error");
        }
    }

    [Fact]
    public async Task Openapi_document_describes_the_management_api()
    {
        var (_, manage, _) = await StartAsync();
        using var anonymous = new HttpClient { BaseAddress = manage.BaseAddress };
        var doc = await JsonAsync(await anonymous.GetAsync("/manage/v1/openapi/management.json"));
        var paths = doc.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/manage/v1/devices", paths);
        Assert.Contains("/manage/v1/devices/{id}/policy", paths);
        Assert.Contains("/manage/v1/usage/timeseries", paths);
        Assert.Contains("/manage/v1/gateways", paths);
    }

    [Fact]
    public async Task Devices_list_page_sort_search_detail_and_audit()
    {
        var (gateway, manage, _) = await StartAsync();
        foreach (var id in new[] { "laptop-alice", "laptop-bob", "desktop-carol" })
        {
            var token = await gateway.BootstrapAsync(id);
            if (id == "laptop-bob")
            {
                using var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            }
        }
        await StackFixture.StoredAsync(gateway, 1);

        var page = await JsonAsync(await manage.GetAsync("/manage/v1/devices?search=LAPTOP&sort=device_id&order=asc&page=1&page_size=1"));
        Assert.Equal(2, page.GetProperty("total").GetInt32());
        Assert.Equal("laptop-alice", page.GetProperty("data")[0].GetProperty("device_id").GetString());
        var second = await JsonAsync(await manage.GetAsync("/manage/v1/devices?search=laptop&sort=device_id&order=asc&page=2&page_size=1"));
        Assert.Equal("laptop-bob", second.GetProperty("data")[0].GetProperty("device_id").GetString());
        var bySpend = await JsonAsync(await manage.GetAsync("/manage/v1/devices?sort=spend&order=desc"));
        Assert.Equal("laptop-bob", bySpend.GetProperty("data")[0].GetProperty("device_id").GetString());
        Assert.True(bySpend.GetProperty("data")[0].GetProperty("spent_this_period").GetDecimal() > 0);

        var detail = await JsonAsync(await manage.GetAsync("/manage/v1/devices/desktop-carol"));
        Assert.Equal("active", detail.GetProperty("status").GetString());
        using (var missing = await manage.GetAsync("/manage/v1/devices/nobody"))
        {
            await Http.AssertErrorAsync(missing, 404, "not_found_error");
        }

        await JsonAsync(await manage.PostAsync("/manage/v1/devices/desktop-carol/revoke", null));
        var audit = await JsonAsync(await manage.GetAsync("/manage/v1/devices/desktop-carol/audit"));
        var entry = audit.GetProperty("data")[0];
        Assert.Equal("revoke", entry.GetProperty("action").GetString());
        Assert.Equal("ops@acme", entry.GetProperty("actor").GetString());
        Assert.Contains("active", entry.GetProperty("before").GetString());
        Assert.Contains("revoked", entry.GetProperty("after").GetString());
        var all = await JsonAsync(await manage.GetAsync("/manage/v1/audit"));
        Assert.True(all.GetProperty("total").GetInt32() >= 1);
    }

    [Fact]
    public async Task Approve_revoke_restore_and_register_by_hand()
    {
        var (gateway, manage, db) = await StartAsync(s => s["BOOTSTRAP_MODE"] = "approval");
        using (var pending = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "wants-in" }))
        {
            await Http.AssertErrorAsync(pending, 401, "authentication_error");
        }
        var overview = await JsonAsync(await manage.GetAsync("/manage/v1/overview"));
        Assert.Equal(1, overview.GetProperty("pending_approvals").GetInt32());

        Assert.Equal("active", (await JsonAsync(await manage.PostAsync("/manage/v1/devices/wants-in/approve", null))).GetProperty("status").GetString());
        using (var twice = await manage.PostAsync("/manage/v1/devices/wants-in/approve", null))
        {
            await Http.AssertErrorAsync(twice, 409, "conflict_error");
        }
        var token = await gateway.BootstrapAsync("wants-in");
        Assert.Equal("revoked", (await JsonAsync(await manage.PostAsync("/manage/v1/devices/wants-in/revoke", null))).GetProperty("status").GetString());
        using (var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            await Http.AssertErrorAsync(refused, 401, "authentication_error");
        }
        Assert.Equal("active", (await JsonAsync(await manage.PostAsync("/manage/v1/devices/wants-in/restore", null))).GetProperty("status").GetString());
        using (var old = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            // A token from before the revocation stays refused: the device refreshes for one of the new policy version.
            await Http.AssertErrorAsync(old, 401, "authentication_error");
        }
        using (var back = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: await gateway.BootstrapAsync("wants-in"))))
        {
            Assert.Equal(HttpStatusCode.OK, back.StatusCode);
        }

        var created = await JsonAsync(await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "ci-runner-1", models = new[] { "claude-haiku-*" }, rate_limit = 5 }),
            HttpStatusCode.Created);
        Assert.Equal(5, created.GetProperty("rate_limit").GetInt32());
        using (var duplicate = await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "ci-runner-1" }))
        {
            await Http.AssertErrorAsync(duplicate, 409, "conflict_error");
        }
        // A trailing newline is not part of a valid id (a pattern anchored with $ would accept it).
        using (var newline = await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "ci-runner-2\n" }))
        {
            await Http.AssertErrorAsync(newline, 400, "invalid_request_error");
        }
        var issued = await JsonAsync(await manage.PostAsync("/manage/v1/devices/ci-runner-1/token", null));
        var handToken = issued.GetProperty("wrapper_token").GetString();
        using (var haiku = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: handToken)))
        {
            Assert.Equal(HttpStatusCode.OK, haiku.StatusCode);
        }
        Assert.Equal(5L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM audit_log"));
    }

    [Fact]
    public async Task Policy_edits_are_validated_and_old_tokens_must_refresh()
    {
        var (gateway, manage, _) = await StartAsync();
        var token = await gateway.BootstrapAsync("policy-1");
        using (var bad = await manage.PutAsJsonAsync("/manage/v1/devices/policy-1/policy", new { models = Array.Empty<string>(), rate_limit = 10 }))
        {
            await Http.AssertErrorAsync(bad, 400, "invalid_request_error");
        }
        using (var badRate = await manage.PutAsJsonAsync("/manage/v1/devices/policy-1/policy", new { models = new[] { "claude-*" }, rate_limit = 0 }))
        {
            await Http.AssertErrorAsync(badRate, 400, "invalid_request_error");
        }
        var updated = await JsonAsync(await manage.PutAsJsonAsync("/manage/v1/devices/policy-1/policy",
            new { models = new[] { "claude-haiku-*" }, rate_limit = 7, token_limit = 50000, spend_cap = 12.5 }));
        Assert.Equal(2, updated.GetProperty("policy_version").GetInt32());

        using (var stale = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            var (_, message) = await Http.AssertErrorAsync(stale, 401, "authentication_error");
            Assert.Contains("refresh", message);
        }
        using var refreshed = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: token));
        var fresh = (await JsonAsync(refreshed)).GetProperty("wrapper_token").GetString();
        using (var sonnet = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: fresh)))
        {
            await Http.AssertErrorAsync(sonnet, 403, "permission_error");
        }
        using var haiku = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: fresh));
        Assert.Equal(HttpStatusCode.OK, haiku.StatusCode);
    }

    [Fact]
    public async Task A_revocation_reaches_another_instance_within_a_second()
    {
        var (a, manage, db) = await StartAsync();
        var b = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var token = await a.BootstrapAsync("roaming-1");
        using (var warm = await b.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode); // b now holds the device's standing in its local cache
        }
        await JsonAsync(await manage.PostAsync("/manage/v1/devices/roaming-1/revoke", null));
        // The promise is "within a second" on a quiet machine; without the message b's cache would keep the device for
        // 30 s, so waiting up to 15 s still tells a delivered revocation from a lost one on a loaded test machine.
        var clock = Stopwatch.StartNew();
        HttpStatusCode status;
        do
        {
            using var probe = await b.Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"model":"claude-sonnet-4-5","messages":[]}""", bearer: token));
            status = probe.StatusCode;
            if (status == HttpStatusCode.OK)
            {
                await Task.Delay(20);
            }
        }
        while (status == HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(15));
        Assert.True(status == HttpStatusCode.Unauthorized,
            $"the revocation did not reach the other instance in {clock.Elapsed.TotalSeconds:0.0} s: it still answered {(int)status}");
        using var refresh = await b.Client.SendAsync(Http.Post("/refresh", "", bearer: token));
        await Http.AssertErrorAsync(refresh, 403, "permission_error");
    }

    [Fact]
    public async Task Usage_series_totals_sessions_events_csv_and_overview()
    {
        var (gateway, manage, _) = await StartAsync();
        var alice = await gateway.BootstrapAsync("usage-alice");
        var bob = await gateway.BootstrapAsync("usage-bob");
        for (var i = 0; i < 3; i++)
        {
            using var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: alice, headers: ("x-claude-code-session-id", "sess-a")));
        }
        using (var r = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: bob,
            headers: [("x-claude-code-session-id", "sess-b"), ("x-sim-status", "500")]))) { }
        await StackFixture.StoredAsync(gateway, 4);

        var hourly = await JsonAsync(await manage.GetAsync("/manage/v1/usage/timeseries?granularity=hour"));
        Assert.Equal(4, hourly.EnumerateArray().Sum(p => p.GetProperty("requests").GetInt64()));
        var daily = await JsonAsync(await manage.GetAsync("/manage/v1/usage/timeseries?granularity=day&device=usage-alice"));
        Assert.Equal(3, daily.EnumerateArray().Sum(p => p.GetProperty("requests").GetInt64()));
        var byModel = await JsonAsync(await manage.GetAsync("/manage/v1/usage/by-model"));
        Assert.Equal(2, byModel.GetArrayLength());
        var byDevice = await JsonAsync(await manage.GetAsync("/manage/v1/usage/by-device"));
        Assert.Equal(1, byDevice.EnumerateArray().Single(d => d.GetProperty("key").GetString() == "usage-bob").GetProperty("errors").GetInt64());
        var top = await JsonAsync(await manage.GetAsync("/manage/v1/usage/top-spenders?limit=1"));
        Assert.Equal("usage-alice", top[0].GetProperty("key").GetString());
        var sessions = await JsonAsync(await manage.GetAsync("/manage/v1/usage/sessions"));
        Assert.Equal(2, sessions.GetProperty("total").GetInt32());
        var events = await JsonAsync(await manage.GetAsync("/manage/v1/usage/events?session=sess-a&page_size=2"));
        Assert.Equal(3, events.GetProperty("total").GetInt32());
        Assert.Equal(2, events.GetProperty("data").GetArrayLength());

        using var csv = await manage.GetAsync("/manage/v1/usage/export.csv?device=usage-alice");
        Assert.Equal("text/csv", csv.Content.Headers.ContentType!.MediaType);
        var lines = (await csv.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.StartsWith("time,device_id", lines[0]);
        Assert.All(lines[1..], l => Assert.Contains("usage-alice", l));

        var overview = await JsonAsync(await manage.GetAsync("/manage/v1/overview"));
        Assert.Equal(4, overview.GetProperty("requests_today").GetInt64());
        Assert.Equal(0.25, overview.GetProperty("error_rate_today").GetDouble(), 3);
        Assert.True(overview.GetProperty("spend_this_month").GetDecimal() > 0);
        Assert.NotEmpty(overview.GetProperty("spend_by_day").EnumerateArray());
    }

    [Fact]
    public async Task Gateways_are_listed_with_their_breakers_and_can_be_reset()
    {
        var (a, manage, db) = await StartAsync();
        var b = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = OperatorKey);
        var list = await JsonAsync(await manage.GetAsync("/manage/v1/gateways"));
        Assert.True(list.GetArrayLength() >= 2, list.ToString());
        Assert.All(list.EnumerateArray(), g => Assert.Equal("closed", g.GetProperty("breaker").GetProperty("state").GetString()));
        using var reset = await manage.PostAsync("/manage/v1/gateways/circuit-breaker/reset", null);
        Assert.Equal(HttpStatusCode.NoContent, reset.StatusCode);
        Assert.NotNull(b);
    }
}
