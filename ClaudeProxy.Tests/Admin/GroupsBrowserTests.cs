using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Tests.Infrastructure;
using ClaudeProxy.Tests.Management;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>The Groups pages in Debian's Chromium, against the real gateway, Redis and PostgreSQL.</summary>
public sealed class GroupsBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    private async Task<GatewayDbContext> DbAsync() =>
        await _gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();

    /// <summary>The input (or textarea) of the MudBlazor field carrying <paramref name="testId"/>.</summary>
    private static ILocator Field(IPage page, string testId) =>
        page.Locator($"input[data-testid={testId}], [data-testid={testId}] input, textarea[data-testid={testId}], [data-testid={testId}] textarea").First;

    private static async Task TypeAsync(IPage page, string testId, string text)
    {
        await Field(page, testId).FillAsync(text);
        await Field(page, testId).PressAsync("Tab");
    }

    [Fact]
    public async Task An_operator_creates_a_group_sets_its_policy_caps_and_managed_settings_sees_its_pool_and_deletes_it()
    {
        await UsersApiTests.PersonAsync(_gateway, "hana@acme.example", "Hana Hill", ["engineering"]);
        var page = await _admin.SignedInPageAsync("/groups");
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No groups yet");

        // Create an idp group: its members are the people whose groups claim names it.
        await Field(page, "new-name").FillAsync("engineering");
        await page.GetByTestId("create-group").ClickAsync();
        await page.WaitForURLAsync("**/groups/grp_*");
        var id = page.Url[(page.Url.LastIndexOf('/') + 1)..];
        await Assertions.Expect(page.GetByTestId("group-name")).ToHaveTextAsync("engineering");
        await Assertions.Expect(page.GetByTestId("idp-members")).ToContainTextAsync("identity provider's groups claim");
        await Assertions.Expect(page.GetByTestId("members")).ToContainTextAsync("hana@acme.example");

        // Policy: a time zone that does not exist is refused in the form; a real one is saved.
        await TypeAsync(page, "time-zone", "Mars/Olympus");
        await Assertions.Expect(page.GetByText("Not a time zone")).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByTestId("save-policy")).ToBeDisabledAsync();
        await TypeAsync(page, "time-zone", "Europe/Paris");
        await TypeAsync(page, "rate-limit", "30");
        await page.GetByTestId("save-policy").ClickAsync();
        await Assertions.Expect(page.Locator(".mud-snackbar", new PageLocatorOptions { HasText = "Policy saved" })).ToBeVisibleAsync();
        await using (var db = await DbAsync())
        {
            var group = await db.Groups.AsNoTracking().SingleAsync();
            Assert.Equal(("Europe/Paris", 30, 2), (group.TimeZone, group.RateLimit, group.PolicyVersion));
        }

        // Caps: each member 5 USD, the pool 10 USD.
        await TypeAsync(page, "member-cap", "5");
        await TypeAsync(page, "pool-cap", "10");
        await page.GetByTestId("save-caps").ClickAsync();
        await Assertions.Expect(page.GetByTestId("pool-text")).ToHaveTextAsync("$0 / $10.00");
        await using (var db = await DbAsync())
        {
            var caps = await db.SpendLimits.AsNoTracking().OrderBy(s => s.PooledBudget).Select(s => new { s.PooledBudget, s.AmountCents }).ToListAsync();
            Assert.Equal([(false, 500L), (true, 1000L)], caps.Select(c => (c.PooledBudget, c.AmountCents)));
        }

        // Managed settings: invalid JSON shows why and saves nothing; a JSON object is saved.
        var editor = page.GetByTestId("managed-settings").Last;
        await Field(page, "settings-json").Last.FillAsync("""{"env": {"X": "1"}""");
        await editor.GetByTestId("save-settings").ClickAsync();
        await Assertions.Expect(editor.GetByTestId("settings-error")).ToContainTextAsync("Not valid JSON");
        await Field(page, "settings-json").Last.FillAsync("""["not", "an", "object"]""");
        await editor.GetByTestId("save-settings").ClickAsync();
        await Assertions.Expect(editor.GetByTestId("settings-error")).ToContainTextAsync("must be a JSON object");
        await using (var db = await DbAsync())
        {
            Assert.Equal(0, await db.ManagedSettings.CountAsync());
        }
        await Field(page, "settings-json").Last.FillAsync("""{"env": {"X": "1"}, "permissions": {"deny": ["WebFetch"]}}""");
        await editor.GetByTestId("save-settings").ClickAsync();
        await Assertions.Expect(editor.GetByTestId("settings-state")).ToHaveTextAsync("Saved settings are in force.");
        await Assertions.Expect(editor.GetByTestId("settings-error")).ToHaveCountAsync(0);
        using (var manage = new HttpClient { BaseAddress = _gateway.ManagementUrl })
        {
            manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
            var stored = JsonDocument.Parse(await manage.GetStringAsync($"/manage/v1/managed-settings/{id}").WaitAsync(TimeSpan.FromSeconds(30))).RootElement;
            Assert.Equal("1", stored.GetProperty("settings").GetProperty("env").GetProperty("X").GetString());
            Assert.Equal("WebFetch", stored.GetProperty("settings").GetProperty("permissions").GetProperty("deny")[0].GetString());
        }

        // Usage admitted under the group fills its pool, on the Groups list and on the Overview.
        await GroupSpendApiTests.UsageAsync(_gateway, DateTimeOffset.UtcNow, 2.5m, id);
        await GroupSpendApiTests.UsageAsync(_gateway, DateTimeOffset.UtcNow, 40m, null);
        await page.GotoAsync(_admin.Url + "/groups");
        var row = page.GetByTestId("group-row").Filter(new LocatorFilterOptions { HasText = "engineering" });
        await Assertions.Expect(row.GetByTestId("pool-text")).ToHaveTextAsync("$2.50 / $10.00");
        await Assertions.Expect(row.GetByTestId("member-cap")).ToHaveTextAsync("$5.00");
        await Assertions.Expect(row.Locator(".mud-progress-linear")).ToHaveCountAsync(1);
        await AdminBrowser.ShotAsync(page, "groups");
        await page.GotoAsync($"{_admin.Url}/groups/{id}");
        await Assertions.Expect(page.GetByTestId("pool-text").First).ToHaveTextAsync("$2.50 / $10.00");
        await AdminBrowser.ShotAsync(page, "group");
        await page.GotoAsync(_admin.Url + "/");
        await Assertions.Expect(page.GetByTestId("group-spend")).ToContainTextAsync("engineering");
        await Assertions.Expect(page.GetByTestId("group-spend").GetByTestId("pool-text")).ToHaveTextAsync("$2.50 / $10.00");

        // A person's page says which rule binds them and where each part of their policy comes from.
        await page.GotoAsync(_admin.Url + "/users");
        await page.Locator("tr", new PageLocatorOptions { HasText = "hana@acme.example" }).GetByTestId("show-policy").ClickAsync();
        var policy = page.GetByTestId("effective-policy");
        await Assertions.Expect(policy.GetByTestId("binding-reason")).ToContainTextAsync("spend caps that apply");
        await Assertions.Expect(policy.GetByTestId("policy-rules")).ToContainTextAsync("from the group engineering");
        await Assertions.Expect(policy.GetByTestId("policy-caps")).ToContainTextAsync("the engineering group's shared pool");
        await Assertions.Expect(policy.GetByTestId("policy-caps")).ToContainTextAsync("the engineering group's cap on each member");
        await Assertions.Expect(policy.GetByTestId("binding-cap")).ToContainTextAsync("shared pool");
        await Assertions.Expect(policy.GetByTestId("binding-cap")).ToHaveCountAsync(1);
        await AdminBrowser.ShotAsync(page, "user-policy");

        // Delete, behind a confirmation; cancelling changes nothing.
        await page.GotoAsync($"{_admin.Url}/groups/{id}");
        await page.GetByTestId("delete-group").ClickAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Cancel" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("group-name")).ToHaveTextAsync("engineering");
        await page.GetByTestId("delete-group").ClickAsync();
        await Assertions.Expect(page.Locator(".mud-dialog")).ToContainTextAsync("caps, managed settings");
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Delete" }).ClickAsync();
        await page.WaitForURLAsync("**/groups");
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No groups yet");
        await using (var db = await DbAsync())
        {
            Assert.Equal((0, 0, 0), (await db.Groups.CountAsync(), await db.SpendLimits.CountAsync(), await db.ManagedSettings.CountAsync()));
        }
    }

    [Fact]
    public async Task An_operator_adds_and_removes_the_devices_of_a_manual_group()
    {
        await _gateway.BootstrapAsync("ci-runner-1");
        var page = await _admin.SignedInPageAsync("/groups");
        await Field(page, "new-name").FillAsync("build agents");
        await page.GetByTestId("new-source").ClickAsync();
        await page.Locator(".mud-popover-open .mud-list-item", new PageLocatorOptions { HasText = "devices added by hand" }).ClickAsync();
        await page.GetByTestId("create-group").ClickAsync();
        await page.WaitForURLAsync("**/groups/grp_*");
        await Assertions.Expect(page.GetByTestId("group-source")).ToHaveTextAsync("manual");
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No devices in this group yet");

        await Field(page, "new-member").FillAsync("no-such-device");
        await page.GetByTestId("add-member").ClickAsync();
        await Assertions.Expect(page.Locator(".mud-snackbar", new PageLocatorOptions { HasText = "no device 'no-such-device'" })).ToBeVisibleAsync();
        await Field(page, "new-member").FillAsync("ci-runner-1");
        await page.GetByTestId("add-member").ClickAsync();
        await Assertions.Expect(page.GetByTestId("members")).ToContainTextAsync("ci-runner-1");
        await using (var db = await DbAsync())
        {
            Assert.Equal(["ci-runner-1"], await db.GroupMembers.Select(x => x.DeviceId).ToListAsync());
        }

        await page.GetByTestId("remove-member").ClickAsync();
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No devices in this group yet");
        await using (var db = await DbAsync())
        {
            Assert.Equal(0, await db.GroupMembers.CountAsync());
        }
    }
}
