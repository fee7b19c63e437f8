using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using ClaudeProxy.Tests.Management;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>Claude Code's managed settings: stored per group through the management API, merged per caller on the proxy port.</summary>
public sealed class ManagedSettingsTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private async Task<(GatewayHost Gateway, HttpClient Manage)> StartAsync()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);
        var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        return (gateway, manage);
    }

    private static async Task<string> GroupAsync(GatewayHost gateway, string name, string source, params string[] devices)
    {
        var id = "grp_" + string.Concat(Guid.NewGuid().ToString("N").Take(16));
        await using var db = await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();
        db.Groups.Add(new GroupRecord { GroupId = id, Name = name, Source = source, PolicyVersion = 1 });
        foreach (var device in devices)
        {
            db.GroupMembers.Add(new GroupMember { GroupId = id, DeviceId = device, AddedAt = DateTimeOffset.UtcNow });
        }
        await db.SaveChangesAsync();
        return id;
    }

    private static async Task<string> PersonTokenAsync(GatewayHost gateway, params string[] groups)
    {
        var id = await UsersApiTests.PersonAsync(gateway, $"{Guid.NewGuid():N}@acme.example", "Someone", groups);
        await using var db = await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();
        var user = await db.Users.SingleAsync(u => u.UserId == id);
        return gateway.Services.GetRequiredService<TokenService>()
            .IssueForPerson(user, "default", new DevicePolicy(["claude-*"], 1000, null, null, 1), TimeSpan.FromMinutes(10)).Token;
    }

    private static async Task PutAsync(HttpClient manage, string scope, string json, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await manage.PutAsync($"/manage/v1/managed-settings/{scope}", new StringContent(json, Encoding.UTF8, "application/json")).WaitAsync(Timeout);
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    private static async Task<HttpResponseMessage> FetchAsync(GatewayHost gateway, string token, string? ifNoneMatch = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/managed/settings");
        request.Headers.Authorization = new("Bearer", token);
        if (ifNoneMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-None-Match", ifNoneMatch);
        }
        return await gateway.Client.SendAsync(request).WaitAsync(Timeout);
    }

    private static string Sha(string text) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    [Fact]
    public async Task Everyone_and_two_groups_merge_in_group_name_order_with_a_checksum_over_sorted_keys()
    {
        var (gateway, manage) = await StartAsync();
        var alpha = await GroupAsync(gateway, "alpha", GroupRecord.FromProvider);
        var beta = await GroupAsync(gateway, "beta", GroupRecord.FromProvider);
        await PutAsync(manage, "everyone", """{"z":1,"env":{"B":"everyone","A":"everyone"},"list":[1,2],"note":"caf\u00e9 <b> & \"q\""}""");
        await PutAsync(manage, beta, """{"env":{"A":"beta"},"list":[3]}""");
        await PutAsync(manage, alpha, """{"env":{"A":"alpha","C":"alpha"}}""");
        var token = await PersonTokenAsync(gateway, "beta", "alpha");

        using var response = await FetchAsync(gateway, token);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var expected = """{"env":{"A":"beta","B":"everyone","C":"alpha"},"list":[3],"note":"café <b> & \"q\"","z":1}""";
        var body = JsonDocument.Parse(text).RootElement;
        Assert.Equal(expected, body.GetProperty("settings").GetRawText());
        Assert.Equal(Sha(expected), body.GetProperty("checksum").GetString());
        Assert.True(Guid.TryParse(body.GetProperty("uuid").GetString(), out var _));
        Assert.Equal($"\"{Sha(expected)}\"", response.Headers.ETag!.ToString());
        Assert.True(response.Headers.CacheControl is { Private: true, NoCache: true });

        using var again = await FetchAsync(gateway, token, $"\"{Sha(expected)}\"");
        Assert.Equal(HttpStatusCode.NotModified, again.StatusCode);
        Assert.Empty(await again.Content.ReadAsByteArrayAsync());
        using var stale = await FetchAsync(gateway, token, $"\"{Sha("{}")}\"");
        Assert.Equal(HttpStatusCode.OK, stale.StatusCode);
    }

    [Fact]
    public async Task None_configured_is_a_404_even_with_the_checksum_of_an_empty_document()
    {
        var (gateway, _) = await StartAsync();
        var token = await PersonTokenAsync(gateway, "alpha");
        using var response = await FetchAsync(gateway, token, $"\"{Sha("{}")}\"");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task A_device_in_a_manual_group_gets_its_settings_and_a_person_outside_does_not()
    {
        var (gateway, manage) = await StartAsync();
        var group = await GroupAsync(gateway, "build-agents", GroupRecord.Manual, "ci-runner-1");
        await PutAsync(manage, group, """{"permissions":{"deny":["Bash"]}}""");
        using var device = await FetchAsync(gateway, await gateway.BootstrapAsync("ci-runner-1"));
        Assert.Equal(HttpStatusCode.OK, device.StatusCode);
        Assert.Contains("\"deny\":[\"Bash\"]", await device.Content.ReadAsStringAsync());
        using var person = await FetchAsync(gateway, await PersonTokenAsync(gateway, "build-agents"));
        Assert.Equal(HttpStatusCode.NotFound, person.StatusCode);
    }

    [Theory]
    [InlineData("everyone", "[1,2]", HttpStatusCode.BadRequest)]
    [InlineData("everyone", "\"text\"", HttpStatusCode.BadRequest)]
    [InlineData("everyone", "{not json", HttpStatusCode.BadRequest)]
    [InlineData("grp_UPPER", "{}", HttpStatusCode.BadRequest)]
    [InlineData("grp_0123456789abcdef", "{}", HttpStatusCode.NotFound)]
    public async Task Hostile_documents_and_scopes_are_refused_and_nothing_is_stored(string scope, string json, HttpStatusCode status)
    {
        var (gateway, manage) = await StartAsync();
        await PutAsync(manage, scope, json, status);
        await PutAsync(manage, "everyone", new string('[', 100) + new string(']', 100), HttpStatusCode.BadRequest);
        await PutAsync(manage, "everyone", "{\"a\":\"" + new string('x', 70_000) + "\"}", HttpStatusCode.RequestEntityTooLarge);
        await using var db = await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();
        Assert.Equal(0, await db.ManagedSettings.CountAsync());
    }
}
