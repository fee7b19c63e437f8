using System.Net;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Policies;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Management;

/// <summary>
/// Spend limits in Anthropic's Admin API shape on the management port: set (create or replace), list with cursors and
/// filters, get, delete; hostile bodies and queries; the operator key; and the proxy port, which never serves them.
/// </summary>
public sealed class SpendLimitsApiTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private const string Path = "/v1/organizations/spend_limits";

    /// <summary>Counts the announcements, and how many limits were committed when each went out.</summary>
    private sealed class RecordingPolicyChanges(Func<Task<long>> committed) : PolicyChanges
    {
        public List<long> Seen { get; } = [];

        public override async Task ChangedAsync(CancellationToken cancellationToken)
        {
            var count = await committed();
            lock (Seen)
            {
                Seen.Add(count);
            }
        }
    }

    /// <summary>Adds the test's registrations after the gateway's own, so they win.</summary>
    private sealed class LastWordFactory(Action<IServiceCollection> register) : IServiceProviderFactory<IServiceCollection>
    {
        public IServiceCollection CreateBuilder(IServiceCollection services)
        {
            register(services);
            return services;
        }

        public IServiceProvider CreateServiceProvider(IServiceCollection containerBuilder) => containerBuilder.BuildServiceProvider();
    }

    private async Task<(GatewayHost Gateway, HttpClient Manage, string Database)> StartAsync()
    {
        var database = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(database, s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);
        return (gateway, ManageClient(gateway), database);
    }

    /// <summary>Anthropic's Admin API clients send the key as <c>x-api-key</c>.</summary>
    private static HttpClient ManageClient(GatewayHost gateway)
    {
        var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Add("x-api-key", TestSecrets.OperatorKey);
        manage.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        manage.DefaultRequestHeaders.Add("x-operator", "ops@acme");
        return manage;
    }

    private static async Task<JsonElement> JsonAsync(Task<HttpResponseMessage> send, HttpStatusCode status = HttpStatusCode.OK)
    {
        using var response = await send.WaitAsync(Timeout);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<string> ErrorTypeAsync(Task<HttpResponseMessage> send, HttpStatusCode status)
    {
        var json = await JsonAsync(send, status);
        Assert.Equal("error", json.GetProperty("type").GetString());
        return json.GetProperty("error").GetProperty("type").GetString()!;
    }

    private static async Task<GatewayDbContext> DbAsync(GatewayHost gateway) =>
        await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();

    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<string> GroupAsync(HttpClient manage, string name, string source = "idp")
    {
        var group = await JsonAsync(manage.PostAsync("/manage/v1/groups", Body($$"""{"name":"{{name}}","source":"{{source}}"}""")), HttpStatusCode.Created);
        return group.GetProperty("group_id").GetString()!;
    }

    private static Task<JsonElement> SetAsync(HttpClient manage, string json, HttpStatusCode status = HttpStatusCode.Created) =>
        JsonAsync(manage.PostAsync(Path, Body(json)), status);

    private static List<string> Ids(JsonElement page) => [.. page.GetProperty("data").EnumerateArray().Select(l => l.GetProperty("id").GetString()!)];

    [Fact]
    public async Task Limits_round_trip_for_people_groups_and_the_organization_with_paging_replacement_and_deletion()
    {
        var database = await fx.Postgres.CreateDatabaseAsync();
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        settings["REDIS_URL"] = fx.Redis.Url;
        settings["DATABASE_URL"] = fx.Postgres.Url(database);
        settings["USAGE_SPOOL_DIR"] = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "claudeproxy-test-spool-" + database);
        settings["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
        var changes = new RecordingPolicyChanges(() => fx.ScalarAsync<long>(database, "SELECT count(*) FROM spend_limits"));
        await using var gateway = await GatewayHost.StartAsync(settings,
            b => b.Host.UseServiceProviderFactory(new LastWordFactory(s => s.AddSingleton<PolicyChanges>(changes))));
        using var manage = ManageClient(gateway);

        var alice = await UsersApiTests.PersonAsync(gateway, "alice@acme.example", "Alice", ["engineering"]);
        var bob = await UsersApiTests.PersonAsync(gateway, "bob@acme.example", "Bob", []);
        var engineering = await GroupAsync(manage, "engineering");

        var aliceLimit = await SetAsync(manage, $$"""{"scope":{"type":"user","user_id":"{{alice}}"},"amount":"50000","period":"monthly","currency":"USD"}""");
        var aliceId = aliceLimit.GetProperty("id").GetString()!;
        Assert.Matches("^spl_[a-z0-9]{24}$", aliceId);
        Assert.Equal("spend_limit", aliceLimit.GetProperty("type").GetString());
        Assert.Equal("user", aliceLimit.GetProperty("scope").GetProperty("type").GetString());
        Assert.Equal(alice, aliceLimit.GetProperty("scope").GetProperty("user_id").GetString());
        Assert.False(aliceLimit.GetProperty("scope").TryGetProperty("rbac_group_id", out _));
        Assert.Equal("50000", aliceLimit.GetProperty("amount").GetString());
        Assert.Equal("USD", aliceLimit.GetProperty("currency").GetString());
        Assert.Equal("monthly", aliceLimit.GetProperty("period").GetString());
        Assert.False(aliceLimit.TryGetProperty("pooled_budget", out _));
        Assert.Equal(aliceLimit.GetProperty("created_at").GetDateTimeOffset(), aliceLimit.GetProperty("updated_at").GetDateTimeOffset());
        await SetAsync(manage, $$"""{"scope":{"type":"user","user_id":"{{bob}}"},"amount":"1000","period":"weekly","currency":"USD"}""");
        var each = await SetAsync(manage, $$"""{"scope":{"type":"rbac_group","rbac_group_id":"{{engineering}}"},"amount":"20000","period":"monthly","currency":"USD","pooled_budget":false}""");
        Assert.False(each.GetProperty("pooled_budget").GetBoolean());
        Assert.Equal(engineering, each.GetProperty("scope").GetProperty("rbac_group_id").GetString());
        var pool = await SetAsync(manage, $$"""{"scope":{"type":"rbac_group","rbac_group_id":"{{engineering}}"},"amount":"300000","period":"monthly","currency":"USD","pooled_budget":true}""");
        Assert.True(pool.GetProperty("pooled_budget").GetBoolean());
        Assert.NotEqual(each.GetProperty("id").GetString(), pool.GetProperty("id").GetString());
        var org = await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"1000000","period":"monthly","currency":"USD"}""");
        Assert.Equal("""{"type":"organization"}""", org.GetProperty("scope").GetRawText());

        // Five limits, two a page: forward with after_id, then back with before_id.
        var all = await JsonAsync(manage.GetAsync(Path));
        Assert.Equal(5, Ids(all).Count);
        Assert.False(all.GetProperty("has_more").GetBoolean());
        Assert.Equal(["organization", "rbac_group", "rbac_group", "user", "user"],
            all.GetProperty("data").EnumerateArray().Select(l => l.GetProperty("scope").GetProperty("type").GetString()!).ToList());
        var first = await JsonAsync(manage.GetAsync($"{Path}?limit=2"));
        Assert.True(first.GetProperty("has_more").GetBoolean());
        Assert.Equal(Ids(all)[..2], Ids(first));
        Assert.Equal(Ids(all)[0], first.GetProperty("first_id").GetString());
        Assert.Equal(Ids(all)[1], first.GetProperty("last_id").GetString());
        var second = await JsonAsync(manage.GetAsync($"{Path}?limit=2&after_id={first.GetProperty("last_id").GetString()}"));
        Assert.True(second.GetProperty("has_more").GetBoolean());
        Assert.Equal(Ids(all)[2..4], Ids(second));
        var third = await JsonAsync(manage.GetAsync($"{Path}?limit=2&page={second.GetProperty("next_page").GetString()}"));
        Assert.False(third.GetProperty("has_more").GetBoolean());
        Assert.Equal(JsonValueKind.Null, third.GetProperty("next_page").ValueKind);
        Assert.Equal(Ids(all)[4..], Ids(third));
        var back = await JsonAsync(manage.GetAsync($"{Path}?limit=2&before_id={third.GetProperty("first_id").GetString()}"));
        Assert.Equal(Ids(second), Ids(back));
        Assert.True(back.GetProperty("has_more").GetBoolean());
        var start = await JsonAsync(manage.GetAsync($"{Path}?limit=2&before_id={back.GetProperty("first_id").GetString()}"));
        Assert.Equal(Ids(first), Ids(start));
        Assert.False(start.GetProperty("has_more").GetBoolean());
        var none = await JsonAsync(manage.GetAsync($"{Path}?before_id={Ids(all)[0]}"));
        Assert.Empty(Ids(none));
        Assert.Equal(JsonValueKind.Null, none.GetProperty("first_id").ValueKind);

        // Filters.
        Assert.Equal(2, Ids(await JsonAsync(manage.GetAsync($"{Path}?scope_type=user"))).Count);
        Assert.Equal(3, Ids(await JsonAsync(manage.GetAsync($"{Path}?scope_type=organization&scope_type=rbac_group"))).Count);
        Assert.Equal([aliceId], Ids(await JsonAsync(manage.GetAsync($"{Path}?user_id={alice}"))));
        Assert.Equal(2, Ids(await JsonAsync(manage.GetAsync($"{Path}?rbac_group_id={engineering}"))).Count);
        var filteredPage = await JsonAsync(manage.GetAsync($"{Path}?scope_type=rbac_group&limit=1"));
        Assert.True(filteredPage.GetProperty("has_more").GetBoolean());

        // Get, then replace: same id and created_at, new amount, period and updated_at; 200 instead of 201.
        var got = await JsonAsync(manage.GetAsync($"{Path}/{aliceId}"));
        Assert.Equal(aliceLimit.GetRawText(), got.GetRawText());
        var replaced = await SetAsync(manage, $$"""{"scope":{"type":"user","user_id":"{{alice}}"},"amount":"70000","period":"daily"}""", HttpStatusCode.OK);
        Assert.Equal(aliceId, replaced.GetProperty("id").GetString());
        Assert.Equal("70000", replaced.GetProperty("amount").GetString());
        Assert.Equal("daily", replaced.GetProperty("period").GetString());
        Assert.Equal(aliceLimit.GetProperty("created_at").GetDateTimeOffset(), replaced.GetProperty("created_at").GetDateTimeOffset());
        Assert.True(replaced.GetProperty("updated_at").GetDateTimeOffset() > replaced.GetProperty("created_at").GetDateTimeOffset());
        Assert.Equal(replaced.GetRawText(), (await JsonAsync(manage.GetAsync($"{Path}/{aliceId}"))).GetRawText());
        Assert.Equal(5, Ids(await JsonAsync(manage.GetAsync(Path))).Count);

        var deleted = await JsonAsync(manage.DeleteAsync($"{Path}/{aliceId}"));
        Assert.Equal("spend_limit_deleted", deleted.GetProperty("type").GetString());
        Assert.Equal(aliceId, deleted.GetProperty("id").GetString());
        Assert.Equal("not_found_error", await ErrorTypeAsync(manage.GetAsync($"{Path}/{aliceId}"), HttpStatusCode.NotFound));
        Assert.Equal("not_found_error", await ErrorTypeAsync(manage.DeleteAsync($"{Path}/{aliceId}"), HttpStatusCode.NotFound));

        await using var db = await DbAsync(gateway);
        Assert.Equal(4, await db.SpendLimits.CountAsync());
        var audit = await db.Audit.Where(a => a.Action.StartsWith("spend_limit_")).OrderBy(a => a.Id).ToListAsync();
        Assert.Equal(["spend_limit_create", "spend_limit_create", "spend_limit_create", "spend_limit_create", "spend_limit_create",
            "spend_limit_replace", "spend_limit_delete"], audit.Select(a => a.Action).ToList());
        Assert.All(audit, a => Assert.Equal("ops@acme", a.Actor));
        Assert.Contains("70000", audit[5].After);
        Assert.Contains("50000", audit[5].Before);
        // One announcement per write, each after its write was committed (the first, before any limit, is the group's
        // creation); none for reads or refused writes.
        Assert.Equal([0L, 1, 2, 3, 4, 5, 5, 4], changes.Seen);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"amount":"100"}""")]
    [InlineData("""{"scope":"user","amount":"100"}""")]
    [InlineData("""{"scope":["user"],"amount":"100"}""")]
    [InlineData("""{"scope":{},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"workspace","workspace_id":"wrkspc_1"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"USER","user_id":"{user}"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"user"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":42},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"alice@acme.example"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"user","rbac_group_id":"{group}"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"rbac_group","rbac_group_id":"grp_BAD"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"rbac_group","rbac_group_id":"grp_0123456789abcdef'; DROP TABLE spend_limits;--"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"rbac_group","rbac_group_id":"{user}"},"amount":"100"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"-1"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"12.5"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"1e3"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100000000001"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"99999999999999999999999999"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":""}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":" 100"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"+100"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"$5.00"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":-1}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":12.5}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":1e3}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":100.0}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":100000000001}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":true}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":null}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"}}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","period":"yearly"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","period":"Monthly"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","period":30}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","currency":"EUR"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","currency":"usd"}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","pooled_budget":true}""")]
    [InlineData("""{"scope":{"type":"user","user_id":"{user}"},"amount":"100","pooled_budget":false}""")]
    [InlineData("""{"scope":{"type":"organization"},"amount":"100","pooled_budget":true}""")]
    [InlineData("""{"scope":{"type":"rbac_group","rbac_group_id":"{group}"},"amount":"100","pooled_budget":"yes"}""")]
    [InlineData("[]")]
    [InlineData("\"scope\"")]
    [InlineData("not json")]
    [InlineData("""{"scope":{"type":"organization"},"amount":"100" """)]
    [InlineData("")]
    public async Task Hostile_bodies_are_refused_with_invalid_request_error_and_write_nothing(string template)
    {
        var (gateway, manage, _) = await StartAsync();
        var user = await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", []);
        var group = await GroupAsync(manage, "ops");
        var json = template.Replace("{user}", user).Replace("{group}", group);
        Assert.Equal("invalid_request_error", await ErrorTypeAsync(manage.PostAsync(Path, Body(json)), HttpStatusCode.BadRequest));
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.SpendLimits.CountAsync());
        Assert.Equal(0, await db.Audit.CountAsync(a => a.Action.StartsWith("spend_limit_")));
    }

    [Fact]
    public async Task Unknown_fields_are_ignored_an_integer_amount_is_taken_and_period_and_currency_default()
    {
        var (gateway, manage, _) = await StartAsync();
        var user = await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", []);
        var limit = await SetAsync(manage,
            $$"""{"scope":{"type":"user","user_id":"{{user}}","note":"x"},"amount":2500,"pooled_budget":null,"owner":"finance","tags":[1,2]}""");
        Assert.Equal("2500", limit.GetProperty("amount").GetString());
        Assert.Equal("monthly", limit.GetProperty("period").GetString());
        Assert.Equal("USD", limit.GetProperty("currency").GetString());
        Assert.False(limit.GetProperty("scope").TryGetProperty("note", out _));
        var zero = await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"0","period":"daily"}""");
        Assert.Equal("0", zero.GetProperty("amount").GetString());
        var most = await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"100000000000","period":"daily"}""", HttpStatusCode.OK);
        Assert.Equal("100000000000", most.GetProperty("amount").GetString());
        await using var db = await DbAsync(gateway);
        Assert.Equal(100_000_000_000, (await db.SpendLimits.SingleAsync(l => l.ScopeType == "organization")).AmountCents);
    }

    [Fact]
    public async Task Scopes_that_do_not_exist_are_404_and_write_nothing()
    {
        var (gateway, manage, _) = await StartAsync();
        Assert.Equal("not_found_error", await ErrorTypeAsync(
            manage.PostAsync(Path, Body("""{"scope":{"type":"user","user_id":"usr_0123456789abcdef"},"amount":"100"}""")), HttpStatusCode.NotFound));
        Assert.Equal("not_found_error", await ErrorTypeAsync(
            manage.PostAsync(Path, Body("""{"scope":{"type":"rbac_group","rbac_group_id":"grp_0123456789abcdef"},"amount":"100"}""")), HttpStatusCode.NotFound));
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.SpendLimits.CountAsync());
        Assert.Equal(0, await db.Audit.CountAsync());
    }

    [Fact]
    public async Task A_body_past_16_KiB_is_413_with_or_without_a_length()
    {
        var (gateway, manage, _) = await StartAsync();
        var padding = new string('x', 20_000);
        var json = $$"""{"scope":{"type":"organization"},"amount":"100","padding":"{{padding}}"}""";
        Assert.Equal("request_too_large", await ErrorTypeAsync(manage.PostAsync(Path, Body(json)), HttpStatusCode.RequestEntityTooLarge));
        var chunked = new StreamContent(new UnseekableStream(Encoding.UTF8.GetBytes(json)));
        chunked.Headers.ContentType = new("application/json");
        Assert.Equal("request_too_large", await ErrorTypeAsync(manage.PostAsync(Path, chunked), HttpStatusCode.RequestEntityTooLarge));
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.SpendLimits.CountAsync());
    }

    /// <summary>A body whose length the client cannot know beforehand, so it goes chunked.</summary>
    private sealed class UnseekableStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }

    [Theory]
    [InlineData("limit=0")]
    [InlineData("limit=-1")]
    [InlineData("limit=1001")]
    [InlineData("limit=5000")]
    [InlineData("limit=x")]
    [InlineData("limit=1.5")]
    [InlineData("limit=%201")]
    [InlineData("limit=99999999999999999999")]
    [InlineData("limit=1&limit=2")]
    [InlineData("after_id=spl_000000000000000000000000")]
    [InlineData("before_id=spl_000000000000000000000000")]
    [InlineData("after_id=garbage")]
    [InlineData("after_id={id}&before_id={id}")]
    [InlineData("scope_type=workspace")]
    [InlineData("scope_type=user,seat_tier")]
    [InlineData("user_id=alice")]
    [InlineData("rbac_group_id=grp_X")]
    public async Task Hostile_list_queries_are_400(string query)
    {
        var (_, manage, _) = await StartAsync();
        var limit = await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"100"}""");
        var url = $"{Path}?{query.Replace("{id}", limit.GetProperty("id").GetString())}";
        Assert.Equal("invalid_request_error", await ErrorTypeAsync(manage.GetAsync(url), HttpStatusCode.BadRequest));
    }

    [Fact]
    public async Task Unknown_ids_are_404_and_malformed_ids_400()
    {
        var (_, manage, _) = await StartAsync();
        Assert.Equal("not_found_error", await ErrorTypeAsync(manage.GetAsync($"{Path}/spl_000000000000000000000000"), HttpStatusCode.NotFound));
        Assert.Equal("not_found_error", await ErrorTypeAsync(manage.DeleteAsync($"{Path}/spl_000000000000000000000000"), HttpStatusCode.NotFound));
        foreach (var bad in new[] { "spl_SHORT", "spl_00000000000000000000000A", "grp_0123456789abcdef", "x" })
        {
            Assert.Equal("invalid_request_error", await ErrorTypeAsync(manage.GetAsync($"{Path}/{bad}"), HttpStatusCode.BadRequest));
            Assert.Equal("invalid_request_error", await ErrorTypeAsync(manage.DeleteAsync($"{Path}/{bad}"), HttpStatusCode.BadRequest));
        }
    }

    [Fact]
    public async Task Concurrent_creations_for_one_scope_leave_exactly_one_limit()
    {
        var (gateway, manage, _) = await StartAsync();
        var user = await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", []);
        var sends = Enumerable.Range(1, 12).Select(async i =>
        {
            using var response = await manage.PostAsync(Path, Body($$"""{"scope":{"type":"user","user_id":"{{user}}"},"amount":"{{i * 100}}"}"""))
                .WaitAsync(Timeout);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
            return (response.StatusCode, Id: JsonDocument.Parse(text).RootElement.GetProperty("id").GetString());
        });
        var answers = await Task.WhenAll(sends);
        Assert.Single(answers, a => a.StatusCode == HttpStatusCode.Created);
        Assert.Single(answers.Select(a => a.Id).Distinct());
        await using var db = await DbAsync(gateway);
        Assert.Equal(1, await db.SpendLimits.CountAsync());
        Assert.Equal(12, await db.Audit.CountAsync(a => a.Action.StartsWith("spend_limit_")));
    }

    [Fact]
    public async Task Without_the_operator_key_the_api_is_401_and_a_bearer_key_works_too()
    {
        var (gateway, _, _) = await StartAsync();
        using var anonymous = new HttpClient { BaseAddress = gateway.ManagementUrl };
        var body = """{"scope":{"type":"organization"},"amount":"100"}""";
        Assert.Equal("authentication_error", await ErrorTypeAsync(anonymous.GetAsync(Path), HttpStatusCode.Unauthorized));
        Assert.Equal("authentication_error", await ErrorTypeAsync(anonymous.PostAsync(Path, Body(body)), HttpStatusCode.Unauthorized));
        using var wrong = new HttpRequestMessage(HttpMethod.Post, Path) { Content = Body(body) };
        wrong.Headers.Add("x-api-key", TestSecrets.OperatorKey + "x");
        Assert.Equal("authentication_error", await ErrorTypeAsync(anonymous.SendAsync(wrong), HttpStatusCode.Unauthorized));
        using var wrongDelete = new HttpRequestMessage(HttpMethod.Delete, $"{Path}/spl_000000000000000000000000");
        wrongDelete.Headers.Add("x-api-key", "sk-ant-admin01-not-the-key");
        Assert.Equal("authentication_error", await ErrorTypeAsync(anonymous.SendAsync(wrongDelete), HttpStatusCode.Unauthorized));
        await using (var db = await DbAsync(gateway))
        {
            Assert.Equal(0, await db.SpendLimits.CountAsync());
        }

        using var bearer = new HttpClient { BaseAddress = gateway.ManagementUrl };
        bearer.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        await SetAsync(bearer, body);
    }

    [Fact]
    public async Task The_proxy_port_answers_404_and_forwards_nothing()
    {
        var (gateway, manage, _) = await StartAsync();
        var limit = await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"100"}""");
        var id = limit.GetProperty("id").GetString()!;
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        foreach (var key in new[] { TestSecrets.OperatorKey, token })
        {
            foreach (var (method, path) in new[]
                     {
                         (HttpMethod.Get, Path), (HttpMethod.Post, Path), (HttpMethod.Get, $"{Path}/{id}"), (HttpMethod.Delete, $"{Path}/{id}"),
                         (HttpMethod.Get, $"{Path}/effective"), (HttpMethod.Get, "/v1/organizations/api_keys"), (HttpMethod.Get, "/V1/Organizations/spend_limits"),
                     })
            {
                using var request = new HttpRequestMessage(method, path);
                request.Headers.Add("x-api-key", key);
                request.Headers.Add("anthropic-version", "2023-06-01");
                if (method == HttpMethod.Post)
                {
                    request.Content = Body("""{"scope":{"type":"organization"},"amount":"1"}""");
                }
                Assert.Equal("not_found_error", await ErrorTypeAsync(gateway.Client.SendAsync(request), HttpStatusCode.NotFound));
            }
        }
        Assert.DoesNotContain(fx.Simulator.State.Requests, r => r.PathAndQuery.Contains("organizations", StringComparison.OrdinalIgnoreCase));
        var still = await JsonAsync(manage.GetAsync($"{Path}/{id}"));
        Assert.Equal("100", still.GetProperty("amount").GetString());
    }

    [Fact]
    public async Task Deleting_a_group_deletes_its_spend_limits()
    {
        var (gateway, manage, _) = await StartAsync();
        var group = await GroupAsync(manage, "contractors", "manual");
        await SetAsync(manage, $$"""{"scope":{"type":"rbac_group","rbac_group_id":"{{group}}"},"amount":"100","pooled_budget":true}""");
        await SetAsync(manage, $$"""{"scope":{"type":"rbac_group","rbac_group_id":"{{group}}"},"amount":"10"}""");
        await SetAsync(manage, """{"scope":{"type":"organization"},"amount":"1000"}""");
        await JsonAsync(manage.DeleteAsync($"/manage/v1/groups/{group}"), HttpStatusCode.NoContent);
        var left = await JsonAsync(manage.GetAsync(Path));
        Assert.Equal(["organization"], left.GetProperty("data").EnumerateArray().Select(l => l.GetProperty("scope").GetProperty("type").GetString()!).ToList());
        Assert.Equal("not_found_error", await ErrorTypeAsync(
            manage.PostAsync(Path, Body($$"""{"scope":{"type":"rbac_group","rbac_group_id":"{{group}}"},"amount":"100"}""")), HttpStatusCode.NotFound));
        await using var db = await DbAsync(gateway);
        Assert.Equal(1, await db.SpendLimits.CountAsync());
    }
}
