using System.Net;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using ClaudeProxy.Tests.Management;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>The Users page in Debian's Chromium, against the real gateway, Redis and PostgreSQL.</summary>
public sealed class UsersBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    private async Task<HttpStatusCode> AskAsync(string token)
    {
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        return response.StatusCode;
    }

    [Fact]
    public async Task An_operator_finds_a_person_with_their_devices_and_spend_deactivates_and_reactivates_them()
    {
        var empty = await _admin.SignedInPageAsync("/users");
        await Assertions.Expect(empty.GetByTestId("empty")).ToContainTextAsync("sign in to Claude Code");

        var person = await UsersApiTests.PersonAsync(_gateway, "hana@acme.example", "Hana Hill", ["engineering", "platform"]);
        await UsersApiTests.PersonAsync(_gateway, "ivan@acme.example", "Ivan Iles", ["sales"]);
        await using (var db = await _gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync())
        {
            var start = _gateway.Services.GetRequiredService<ManagementContext>().PeriodStart();
            db.UsageRollups.Add(new UsageRollup("d", start, UserRecord.DeviceIdOf(person), "claude-sonnet-4-5", 3, 0, 100, 100, 0, 0, 0, 4.5m, 0));
            db.UsageRollups.Add(new UsageRollup("d", start, "hana-laptop", "claude-haiku-4-5", 2, 0, 100, 100, 0, 0, 0, 1.25m, 0));
            db.Devices.Add(new DeviceRecord
            {
                DeviceId = "hana-laptop", UserId = "hana-laptop", OwnerUserId = person, OrgId = "default", Status = "active", Models = ["claude-*"], RateLimit = 100,
                PolicyVersion = 1, FirstSeen = start, LastSeen = start,
            });
            await db.SaveChangesAsync();
        }
        var token = _gateway.Services.GetRequiredService<TokenService>()
            .Issue(UserRecord.DeviceIdOf(person), person, "default", new DevicePolicy(["claude-*"], 1000, null, null, 1)).Token;
        Assert.Equal(HttpStatusCode.OK, await AskAsync(token));

        var page = await _admin.SignedInPageAsync("/users");
        var row = page.Locator("tr", new PageLocatorOptions { HasText = "hana@acme.example" });
        await Assertions.Expect(row).ToContainTextAsync("Hana Hill");
        await Assertions.Expect(row).ToContainTextAsync("platform");
        await Assertions.Expect(row).ToContainTextAsync("sign-in (Claude Code)");
        await Assertions.Expect(row).ToContainTextAsync("hana-laptop");
        await Assertions.Expect(row.GetByTestId("user-spend")).ToHaveTextAsync("$5.75");
        await Assertions.Expect(row.GetByTestId("user-status")).ToHaveTextAsync("active");
        await AdminBrowser.ShotAsync(page, "users");

        await page.Locator("input[data-testid=search], [data-testid=search] input").First.FillAsync("ivan");
        await Assertions.Expect(row).ToHaveCountAsync(0);
        await page.Locator("input[data-testid=search], [data-testid=search] input").First.FillAsync("hana");
        await row.WaitForAsync();

        // Deactivate, behind a confirmation; cancelling changes nothing.
        await row.GetByTestId("deactivate").ClickAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Cancel" }).ClickAsync();
        await Assertions.Expect(row.GetByTestId("user-status")).ToHaveTextAsync("active");
        await row.GetByTestId("deactivate").ClickAsync();
        await Assertions.Expect(page.Locator(".mud-dialog")).ToContainTextAsync("refused on every gateway within a second");
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Deactivate" }).ClickAsync();
        await Assertions.Expect(row.GetByTestId("user-status")).ToHaveTextAsync("deactivated");
        Assert.Equal(HttpStatusCode.Unauthorized, await AskAsync(token));

        await row.GetByTestId("reactivate").ClickAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Reactivate" }).ClickAsync();
        await Assertions.Expect(row.GetByTestId("user-status")).ToHaveTextAsync("active");
        Assert.Equal(HttpStatusCode.OK, await AskAsync(token));

        // The audit trail names the operator who signed in to the admin app.
        await using (var db = await _gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync())
        {
            var audit = await db.Audit.Where(a => a.Target == person).OrderBy(a => a.Id).Select(a => new { a.Action, a.Actor }).ToListAsync();
            Assert.Equal([("deactivate", "admin"), ("reactivate", "admin")], audit.Select(a => (a.Action, a.Actor)));
        }
    }
}
