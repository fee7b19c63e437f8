using System.Net;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Management;

/// <summary>A group's spend this period against its pool and member caps, and the setting of those caps.</summary>
public sealed class GroupSpendApiTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private async Task<(GatewayHost Gateway, HttpClient Manage)> StartAsync()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);
        var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        manage.DefaultRequestHeaders.Add("x-operator", "ops@acme");
        return (gateway, manage);
    }

    private static async Task<JsonElement> JsonAsync(Task<HttpResponseMessage> send, HttpStatusCode status = HttpStatusCode.OK)
    {
        using var response = await send.WaitAsync(Timeout);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<GatewayDbContext> DbAsync(GatewayHost gateway) =>
        await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();

    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<string> GroupAsync(HttpClient manage, string json) =>
        (await JsonAsync(manage.PostAsync("/manage/v1/groups", Body(json)), HttpStatusCode.Created)).GetProperty("group_id").GetString()!;

    internal static async Task UsageAsync(GatewayHost gateway, DateTimeOffset time, decimal? cost, string? groupIds)
    {
        await using var db = await DbAsync(gateway);
        db.UsageEvents.Add(TestEvents.Usage() with { Time = time, CostUsd = cost, GroupIds = groupIds });
        await db.SaveChangesAsync();
    }

    private static JsonElement Of(JsonElement list, string groupId) => list.EnumerateArray().Single(g => g.GetProperty("group_id").GetString() == groupId);

    [Fact]
    public async Task A_groups_spend_sums_only_its_own_events_in_its_own_period()
    {
        var (gateway, manage) = await StartAsync();
        await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", ["engineering"]);
        var engineering = await GroupAsync(manage, """{"name":"engineering","source":"idp"}""");
        var sales = await GroupAsync(manage, """{"name":"sales","source":"manual"}""");
        // A day counted in Auckland starts at a different instant from a UTC day.
        var night = await GroupAsync(manage, """{"name":"night shift","source":"manual","policy":{"spend_period":"day","time_zone":"Pacific/Auckland"}}""");

        var now = DateTimeOffset.UtcNow;
        var month = SpendPeriods.Of(SpendPeriod.Month, now, TimeZoneInfo.Utc);
        var day = SpendPeriods.Of(SpendPeriod.Day, now, TimeZoneInfo.FindSystemTimeZoneById("Pacific/Auckland"));
        await UsageAsync(gateway, month.Start, 1.25m, engineering);
        await UsageAsync(gateway, now.AddSeconds(-1), 2m, $"{engineering} {sales}");
        await UsageAsync(gateway, now.AddSeconds(-1), 4m, sales);
        await UsageAsync(gateway, now.AddSeconds(-1), 8m, null);
        await UsageAsync(gateway, now.AddSeconds(-1), null, engineering);
        await UsageAsync(gateway, month.Start.AddTicks(-1), 16m, $"{engineering} {sales}");
        await UsageAsync(gateway, day.Start, 32m, night);
        await UsageAsync(gateway, day.Start.AddSeconds(-1), 64m, night);

        var list = await JsonAsync(manage.GetAsync("/manage/v1/groups/spend"));
        Assert.Equal(["engineering", "night shift", "sales"], list.EnumerateArray().Select(g => g.GetProperty("name").GetString()));
        var e = Of(list, engineering);
        Assert.Equal(3.25m, e.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(1, e.GetProperty("member_count").GetInt32());
        Assert.Equal("monthly", e.GetProperty("period").GetString());
        Assert.Equal("UTC", e.GetProperty("time_zone").GetString());
        Assert.Equal(month.Start, e.GetProperty("period_start").GetDateTimeOffset());
        Assert.Equal(month.End, e.GetProperty("resets_at").GetDateTimeOffset());
        Assert.Equal(JsonValueKind.Null, e.GetProperty("pool_cap_usd").ValueKind);
        Assert.Equal(6m, Of(list, sales).GetProperty("spent_usd").GetDecimal());
        var n = Of(list, night);
        Assert.Equal(32m, n.GetProperty("spent_usd").GetDecimal());
        Assert.Equal("daily", n.GetProperty("period").GetString());
        Assert.Equal("Pacific/Auckland", n.GetProperty("time_zone").GetString());
        Assert.Equal(day.Start, n.GetProperty("period_start").GetDateTimeOffset());

        var one = await JsonAsync(manage.GetAsync($"/manage/v1/groups/{sales}/spend"));
        Assert.Equal(6m, one.GetProperty("spent_usd").GetDecimal());
        await JsonAsync(manage.GetAsync("/manage/v1/groups/grp_0123456789abcdef/spend"), HttpStatusCode.NotFound);
        await JsonAsync(manage.GetAsync("/manage/v1/groups/grp_BAD/spend"), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Caps_round_trip_as_two_spend_limits_per_group_and_null_removes_one()
    {
        var (gateway, manage) = await StartAsync();
        var id = await GroupAsync(manage, """{"name":"engineering","source":"idp"}""");

        var set = await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("""{"member_cap_usd":25,"pool_cap_usd":1000.5}""")));
        Assert.Equal(25m, set.GetProperty("member_cap_usd").GetDecimal());
        Assert.Equal(1000.5m, set.GetProperty("pool_cap_usd").GetDecimal());
        Assert.Matches("^spl_[a-z0-9]{24}$", set.GetProperty("pool_limit_id").GetString());
        await using (var db = await DbAsync(gateway))
        {
            var rows = await db.SpendLimits.AsNoTracking().OrderBy(s => s.PooledBudget).ToListAsync();
            Assert.Equal([(false, 2500L), (true, 100050L)], rows.Select(r => (r.PooledBudget, r.AmountCents)));
            Assert.All(rows, r => Assert.Equal((SpendLimitRecord.Group, id, "monthly", "USD"), (r.ScopeType, r.ScopeId, r.Period, r.Currency)));
        }

        // The group's period is its caps' period, when set and when changed; a second PUT replaces in place and null removes.
        await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/policy", Body("""{"spend_period":"week"}""")));
        await using (var db = await DbAsync(gateway))
        {
            Assert.All(await db.SpendLimits.AsNoTracking().ToListAsync(), r => Assert.Equal("weekly", r.Period));
        }
        Assert.Equal("weekly", (await JsonAsync(manage.GetAsync($"/manage/v1/groups/{id}/spend"))).GetProperty("period").GetString());
        var again = await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("""{"member_cap_usd":null,"pool_cap_usd":20}""")));
        Assert.Equal(set.GetProperty("pool_limit_id").GetString(), again.GetProperty("pool_limit_id").GetString());
        Assert.Equal(JsonValueKind.Null, again.GetProperty("member_cap_usd").ValueKind);
        Assert.Equal("weekly", again.GetProperty("period").GetString());
        var listed = Of(await JsonAsync(manage.GetAsync("/manage/v1/groups/spend")), id);
        Assert.Equal(20m, listed.GetProperty("pool_cap_usd").GetDecimal());
        await using (var db = await DbAsync(gateway))
        {
            var row = await db.SpendLimits.AsNoTracking().SingleAsync();
            Assert.Equal((true, 2000L, "weekly"), (row.PooledBudget, row.AmountCents, row.Period));
            var audit = await db.Audit.AsNoTracking().Where(a => a.Action == "group_caps").OrderBy(a => a.Id).ToListAsync();
            Assert.Equal(2, audit.Count);
            Assert.All(audit, a => Assert.Equal(("ops@acme", id), (a.Actor, a.Target)));
        }

        await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("{}")));
        await using (var db = await DbAsync(gateway))
        {
            Assert.Equal(0, await db.SpendLimits.CountAsync());
        }

        // Deleting the group takes its caps with it.
        await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("""{"member_cap_usd":0}""")));
        await JsonAsync(manage.DeleteAsync($"/manage/v1/groups/{id}"), HttpStatusCode.NoContent);
        await using (var db = await DbAsync(gateway))
        {
            Assert.Equal(0, await db.SpendLimits.CountAsync());
        }
    }

    [Fact]
    public async Task A_pool_cap_applies_to_the_next_request_and_its_removal_too()
    {
        var (gateway, manage) = await StartAsync();
        var person = await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", ["engineering"]);
        UserRecord user;
        await using (var db = await DbAsync(gateway))
        {
            user = await db.Users.AsNoTracking().SingleAsync(u => u.UserId == person);
        }
        var token = gateway.Services.GetRequiredService<ClaudeProxy.Gateway.Tokens.TokenService>()
            .IssueForPerson(user, "default", new ClaudeProxy.Gateway.Tokens.DevicePolicy(["claude-*"], 1000, null, null, 1), TimeSpan.FromMinutes(10)).Token;
        async Task<(HttpStatusCode, string)> AskAsync()
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)).WaitAsync(Timeout);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        var id = await GroupAsync(manage, """{"name":"engineering","source":"idp"}""");
        Assert.Equal(HttpStatusCode.OK, (await AskAsync()).Item1);

        // No wait for a periodic reload: the write itself makes every instance reload before it answers.
        await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("""{"pool_cap_usd":0}""")));
        var (refused, body) = await AskAsync();
        Assert.Equal(HttpStatusCode.TooManyRequests, refused);
        Assert.Contains("engineering", body);

        await JsonAsync(manage.PutAsync($"/manage/v1/groups/{id}/caps", Body("""{"pool_cap_usd":null}""")));
        Assert.Equal(HttpStatusCode.OK, (await AskAsync()).Item1);
    }

    [Fact]
    public async Task The_users_list_gives_the_people_of_an_idp_group_by_its_exact_name()
    {
        var (gateway, manage) = await StartAsync();
        await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", ["engineering"]);
        await UsersApiTests.PersonAsync(gateway, "b@acme.example", "B", ["engineering-leads", "sales"]);
        await UsersApiTests.PersonAsync(gateway, "c@acme.example", "C", ["Engineering"]);
        var page = await JsonAsync(manage.GetAsync("/manage/v1/users?group=engineering&sort=email&order=asc"));
        Assert.Equal(["a@acme.example"], page.GetProperty("data").EnumerateArray().Select(u => u.GetProperty("email").GetString()));
        var none = await JsonAsync(manage.GetAsync("/manage/v1/users?group=" + Uri.EscapeDataString("%")));
        Assert.Equal(0, none.GetProperty("total").GetInt32());
        await JsonAsync(manage.GetAsync("/manage/v1/users?group=" + new string('g', 129)), HttpStatusCode.BadRequest);
    }

    [Theory]
    [InlineData("""{"member_cap_usd":-1}""")]
    [InlineData("""{"pool_cap_usd":-0.01}""")]
    [InlineData("""{"pool_cap_usd":1000000000.01}""")]
    [InlineData("""{"member_cap_usd":1e400}""")]
    [InlineData("""{"member_cap_usd":1.001}""")]
    [InlineData("""{"member_cap_usd":"5"}""")]
    [InlineData("""{"pool_cap_usd":true}""")]
    [InlineData("""{"pool_cap_usd":{"amount":5}}""")]
    [InlineData("""{"member_cap_usd":5,"pool_cap_usd":-5}""")]
    [InlineData("""{"pool_cap":5}""")]
    [InlineData("""{"member_cap_usd":5,"MEMBER_CAP_USD":6}""")]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData("not json")]
    [InlineData("")]
    public async Task Hostile_caps_are_refused_and_write_nothing(string json)
    {
        var (gateway, manage) = await StartAsync();
        var id = await GroupAsync(manage, """{"name":"engineering","source":"idp"}""");
        using var response = await manage.PutAsync($"/manage/v1/groups/{id}/caps", Body(json)).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.SpendLimits.CountAsync());
        Assert.Equal(0, await db.Audit.CountAsync(a => a.Action == "group_caps"));
    }

    [Fact]
    public async Task Caps_on_a_malformed_or_unknown_group_are_400_and_404()
    {
        var (gateway, manage) = await StartAsync();
        await JsonAsync(manage.PutAsync("/manage/v1/groups/grp_SHORT/caps", Body("""{"pool_cap_usd":5}""")), HttpStatusCode.BadRequest);
        await JsonAsync(manage.PutAsync("/manage/v1/groups/grp_0123456789abcdef/caps", Body("""{"pool_cap_usd":5}""")), HttpStatusCode.NotFound);
        using var anonymous = new HttpClient { BaseAddress = gateway.ManagementUrl };
        await JsonAsync(anonymous.PutAsync("/manage/v1/groups/grp_0123456789abcdef/caps", Body("""{"pool_cap_usd":5}""")), HttpStatusCode.Unauthorized);
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.SpendLimits.CountAsync());
    }
}
