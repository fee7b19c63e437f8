using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Management;

/// <summary>Groups in the management API: create, list with member counts, policy, members of manual groups, delete.</summary>
public sealed class GroupsApiTests(StackFixture fx) : IClassFixture<StackFixture>
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

    [Fact]
    public async Task Groups_round_trip_with_member_counts_policy_members_and_delete()
    {
        var (gateway, manage) = await StartAsync();
        await UsersApiTests.PersonAsync(gateway, "a@acme.example", "A", ["engineering"]);
        await UsersApiTests.PersonAsync(gateway, "b@acme.example", "B", ["engineering", "sales"]);
        await gateway.BootstrapAsync("ci-runner-1");

        var idp = await JsonAsync(manage.PostAsync("/manage/v1/groups", Body("""{"name":"engineering","source":"idp","policy":{"models":["claude-sonnet-*"],"spend_period":"week","time_zone":"Europe/Paris"}}""")), HttpStatusCode.Created);
        var idpId = idp.GetProperty("group_id").GetString()!;
        Assert.Matches("^grp_[a-z0-9]{16}$", idpId);
        Assert.Equal(2, idp.GetProperty("member_count").GetInt32());
        var manual = await JsonAsync(manage.PostAsync("/manage/v1/groups", Body("""{"name":"build agents","source":"manual"}""")), HttpStatusCode.Created);
        var manualId = manual.GetProperty("group_id").GetString()!;

        var withMember = await JsonAsync(manage.PostAsJsonAsync($"/manage/v1/groups/{manualId}/members", new { device_id = "ci-runner-1" }));
        Assert.Equal(1, withMember.GetProperty("member_count").GetInt32());
        Assert.Equal("ci-runner-1", withMember.GetProperty("members")[0].GetString());
        await JsonAsync(manage.PostAsJsonAsync($"/manage/v1/groups/{idpId}/members", new { device_id = "ci-runner-1" }), HttpStatusCode.Conflict);
        await JsonAsync(manage.PostAsJsonAsync($"/manage/v1/groups/{manualId}/members", new { device_id = "nobody" }), HttpStatusCode.NotFound);

        var list = await JsonAsync(manage.GetAsync("/manage/v1/groups?search=ENGIN"));
        Assert.Equal(1, list.GetProperty("total").GetInt32());
        Assert.Equal(2, list.GetProperty("data")[0].GetProperty("member_count").GetInt32());

        var updated = await JsonAsync(manage.PutAsync($"/manage/v1/groups/{idpId}/policy", Body("""{"rate_limit":30,"spend_period":"month"}""")));
        Assert.Equal(2, updated.GetProperty("policy_version").GetInt32());
        Assert.Equal(30, updated.GetProperty("rate_limit").GetInt32());

        await JsonAsync(manage.PutAsync($"/manage/v1/managed-settings/{manualId}", Body("""{"env":{"X":"1"}}""")));
        await JsonAsync(manage.DeleteAsync($"/manage/v1/groups/{manualId}/members/ci-runner-1"), HttpStatusCode.NoContent);
        await JsonAsync(manage.PostAsJsonAsync($"/manage/v1/groups/{manualId}/members", new { device_id = "ci-runner-1" }));
        await JsonAsync(manage.DeleteAsync($"/manage/v1/groups/{manualId}"), HttpStatusCode.NoContent);
        await JsonAsync(manage.GetAsync($"/manage/v1/groups/{manualId}"), HttpStatusCode.NotFound);
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.GroupMembers.CountAsync());
        Assert.Equal(0, await db.ManagedSettings.CountAsync());
        Assert.Contains(await db.Audit.Select(a => a.Action).ToListAsync(), a => a == "group_delete");
    }

    [Theory]
    [InlineData("""{"source":"idp"}""")]
    [InlineData("""{"name":"","source":"idp"}""")]
    [InlineData("""{"name":"x","source":"ldap"}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"models":[]}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"models":["bad model!"]}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"rate_limit":-1}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"spend_period":"year"}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"time_zone":"Mars/Olympus"}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"time_zone":"../../etc/passwd"}}""")]
    [InlineData("""{"name":"x","source":"idp","policy":{"rate_limit":"many"}}""")]
    [InlineData("[]")]
    [InlineData("not json")]
    public async Task Hostile_creations_are_refused_and_write_nothing(string json)
    {
        var (gateway, manage) = await StartAsync();
        await JsonAsync(manage.PostAsync("/manage/v1/groups", Body(json)), HttpStatusCode.BadRequest);
        await using var db = await DbAsync(gateway);
        Assert.Equal(0, await db.Groups.CountAsync());
        Assert.Equal(0, await db.Audit.CountAsync());
    }

    [Fact]
    public async Task Malformed_ids_are_400_unknown_are_404_and_names_are_unique()
    {
        var (gateway, manage) = await StartAsync();
        foreach (var bad in new[] { "grp_SHORT", "grp_0123456789abcdeF", "usr_0123456789abcdef" })
        {
            await JsonAsync(manage.GetAsync($"/manage/v1/groups/{bad}"), HttpStatusCode.BadRequest);
            await JsonAsync(manage.DeleteAsync($"/manage/v1/groups/{bad}"), HttpStatusCode.BadRequest);
            await JsonAsync(manage.PutAsync($"/manage/v1/groups/{bad}/policy", Body("{}")), HttpStatusCode.BadRequest);
        }
        await JsonAsync(manage.GetAsync("/manage/v1/groups/grp_0123456789abcdef"), HttpStatusCode.NotFound);
        await JsonAsync(manage.PutAsync("/manage/v1/groups/grp_0123456789abcdef/policy", Body("{}")), HttpStatusCode.NotFound);
        await JsonAsync(manage.PostAsync("/manage/v1/groups", Body("""{"name":"ops","source":"manual"}""")), HttpStatusCode.Created);
        await JsonAsync(manage.PostAsync("/manage/v1/groups", Body("""{"name":"ops","source":"idp"}""")), HttpStatusCode.Conflict);
        await using var db = await DbAsync(gateway);
        Assert.Equal(1, await db.Groups.CountAsync());
    }
}
