using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>The admin app in Debian's Chromium, against the real stack: gateway, Redis, PostgreSQL and the simulator.</summary>
public sealed class AdminBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    /// <summary>MudBlazor puts extra attributes on the input itself or on its wrapper, depending on the component.</summary>
    private static ILocator Field(IPage page, string testId) => page.Locator($"input[data-testid={testId}], [data-testid={testId}] input").First;

    [Fact]
    public async Task An_operator_signs_in_finds_a_device_narrows_its_models_and_revokes_it()
    {
        var deviceId = "browser-" + Guid.NewGuid().ToString("N")[..6];
        var token = await _gateway.BootstrapAsync(deviceId);
        var other = "someone-else-" + Guid.NewGuid().ToString("N")[..6];
        await _gateway.BootstrapAsync(other);
        foreach (var body in new[] { Http.SmallMessage, Http.SmallMessage, """{"model":"claude-haiku-4-5-20251001","max_tokens":5,"messages":[]}""" })
        {
            using var response = await _gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token,
                headers: [("x-sim-input-tokens", "200000"), ("x-sim-output-tokens", "40000"), ("x-claude-code-session-id", "browser-session")]));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        await StackFixture.StoredAsync(_gateway, 3);

        // The overview's chart and top devices are drawn from those usage rows.
        var page = await _admin.SignedInPageAsync("/");
        var chart = page.Locator("[data-testid=spend-chart] svg");
        await chart.WaitForAsync();
        Assert.True(await page.Locator("[data-testid=spend-chart] svg rect, [data-testid=spend-chart] svg path").CountAsync() > 0);
        await Assertions.Expect(page.Locator("[data-testid=top-devices]")).ToContainTextAsync(deviceId);
        await Assertions.Expect(page.GetByTestId("requests-today")).ToHaveTextAsync("3");
        await AdminBrowser.ShotAsync(page, "overview");

        await page.GotoAsync(_admin.Url + "/devices");
        await Field(page, "search").FillAsync(deviceId[..10]);
        var row = page.Locator("tr", new PageLocatorOptions { HasText = deviceId });
        await row.WaitForAsync();
        await Assertions.Expect(page.Locator("tr", new PageLocatorOptions { HasText = other })).ToHaveCountAsync(0);
        await AdminBrowser.ShotAsync(page, "devices");
        // A click that lands while the grid is redrawn for the search is lost with the row it hit: the row is clicked
        // again (at most three times) until the device opens.
        for (var attempt = 1; ; attempt++)
        {
            await row.ClickAsync();
            try
            {
                await page.WaitForURLAsync($"**/devices/{deviceId}", new PageWaitForURLOptions { Timeout = 10_000 });
                break;
            }
            catch (TimeoutException) when (attempt < 3)
            {
            }
        }
        await Assertions.Expect(page.GetByTestId("device-status")).ToHaveTextAsync("active");
        await Assertions.Expect(page.GetByTestId("events")).ToContainTextAsync("claude-haiku-4-5-20251001");

        // Remove Sonnet from the allowlist.
        var models = Field(page, "models");
        await models.FillAsync("claude-haiku-*");
        await models.PressAsync("Tab");
        await page.GetByTestId("save-policy").ClickAsync();
        await Assertions.Expect(page.GetByTestId("audit")).ToContainTextAsync("policy");
        await AdminBrowser.ShotAsync(page, "device");

        using (var stale = await _gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            var (_, message) = await Http.AssertErrorAsync(stale, 401, "authentication_error");
            Assert.Contains("refresh", message);
        }
        using var refreshed = await _gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: token));
        var fresh = JsonDocument.Parse(await refreshed.Content.ReadAsStringAsync()).RootElement.GetProperty("wrapper_token").GetString();
        using (var sonnet = await _gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: fresh)))
        {
            await Http.AssertErrorAsync(sonnet, 403, "permission_error");
        }
        using (var haiku = await _gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: fresh)))
        {
            Assert.Equal(HttpStatusCode.OK, haiku.StatusCode);
        }

        // Revoke, behind a confirmation.
        await page.GetByTestId("revoke").ClickAsync();
        await page.Locator(".mud-dialog").WaitForAsync();
        await AdminBrowser.ShotAsync(page, "revoke-confirmation");
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Revoke" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("device-status")).ToHaveTextAsync("revoked");
        using (var revoked = await _gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: fresh)))
        {
            await Http.AssertErrorAsync(revoked, 401, "authentication_error");
        }

        await page.GotoAsync(_admin.Url + "/usage");
        await page.GetByTestId("total-requests").WaitForAsync();
        await AdminBrowser.ShotAsync(page, "usage");
        await page.GotoAsync(_admin.Url + "/gateways");
        await Assertions.Expect(page.GetByTestId("gateways")).ToContainTextAsync("closed");
        await AdminBrowser.ShotAsync(page, "gateways");
    }

    [Fact]
    public async Task Every_page_needs_a_sign_in_and_repeated_failures_lock_the_address_out()
    {
        var page = await _admin.Browser.NewPageAsync();
        foreach (var path in new[] { "/", "/devices", "/usage", "/gateways", "/export/usage.csv" })
        {
            await page.GotoAsync(_admin.Url + path);
            Assert.Contains("/login", page.Url);
        }
        await AdminBrowser.ShotAsync(page, "login");
        for (var i = 0; i < 5; i++)
        {
            await page.FillAsync("input[name=password]", "wrong-" + i);
            await page.ClickAsync("button[type=submit]");
            await page.WaitForURLAsync("**/login?error=*");
        }
        await Assertions.Expect(page.Locator(".login-error")).ToContainTextAsync("Too many failed attempts");
        await page.FillAsync("input[name=password]", AdminBrowser.Password);
        await page.ClickAsync("button[type=submit]");
        await page.WaitForURLAsync("**/login?error=locked");
    }

    [Fact]
    public async Task The_overview_warns_about_usage_events_postgres_refused()
    {
        var writer = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<ClaudeProxy.Gateway.Usage.UsageWriter>(_gateway.Services);
        writer.Enqueue(TestEvents.Usage(model: "claude\0refused"));
        await writer.WaitForDeadLettersAsync(1).WaitAsync(TimeSpan.FromSeconds(60));

        var page = await _admin.SignedInPageAsync("/");
        await Assertions.Expect(page.GetByTestId("dead-letters")).ToContainTextAsync("1 usage events were refused by Postgres");
    }
}
