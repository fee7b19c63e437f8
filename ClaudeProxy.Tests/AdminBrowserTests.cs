using System.Net;
using System.Text.Json;
using ClaudeProxy.Admin;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests;

/// <summary>The admin app in Debian's Chromium, against the real stack: gateway, Redis, PostgreSQL and the simulator.</summary>
public sealed class AdminBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private const string Password = "correct horse battery staple";
    private static readonly string Screenshots = Path.Combine(AppContext.BaseDirectory, "screenshots");
    private GatewayHost _gateway = null!;
    private WebApplication _admin = null!;
    private string _adminUrl = "";
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        _gateway = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = ManagementApiTests.OperatorKey);
        _admin = AdminApp.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["ADMIN_API_KEY"] = ManagementApiTests.OperatorKey,
                ["ADMIN_PASSWORD"] = Password,
                ["services:gateway:management:0"] = _gateway.ManagementUrl.ToString().TrimEnd('/'),
                ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
            });
            b.WebHost.UseUrls("http://127.0.0.1:0");
        });
        await _admin.StartAsync();
        _adminUrl = _admin.Urls.First().TrimEnd('/');
        Directory.CreateDirectory(Screenshots);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
    }

    public async Task DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
        await _admin.StopAsync();
        await _admin.DisposeAsync();
    }

    private async Task<IPage> SignedInPageAsync(string path = "/")
    {
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync(_adminUrl + path);
        await page.WaitForURLAsync("**/login**");
        await page.FillAsync("input[name=password]", Password);
        await page.ClickAsync("button[type=submit]");
        await page.WaitForURLAsync(url => !url.Contains("/login", StringComparison.Ordinal));
        return page;
    }

    /// <summary>MudBlazor puts extra attributes on the input itself or on its wrapper, depending on the component.</summary>
    private static ILocator Field(IPage page, string testId) => page.Locator($"input[data-testid={testId}], [data-testid={testId}] input").First;

    private static Task<byte[]> ShotAsync(IPage page, string name) => page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Screenshots, name + ".png"), FullPage = true });

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
        var page = await SignedInPageAsync("/");
        var chart = page.Locator("[data-testid=spend-chart] svg");
        await chart.WaitForAsync();
        Assert.True(await page.Locator("[data-testid=spend-chart] svg rect, [data-testid=spend-chart] svg path").CountAsync() > 0);
        await Assertions.Expect(page.Locator("[data-testid=top-devices]")).ToContainTextAsync(deviceId);
        await Assertions.Expect(page.GetByTestId("requests-today")).ToHaveTextAsync("3");
        await ShotAsync(page, "overview");

        await page.GotoAsync(_adminUrl + "/devices");
        await Field(page, "search").FillAsync(deviceId[..10]);
        var row = page.Locator("tr", new PageLocatorOptions { HasText = deviceId });
        await row.WaitForAsync();
        await Assertions.Expect(page.Locator("tr", new PageLocatorOptions { HasText = other })).ToHaveCountAsync(0);
        await ShotAsync(page, "devices");
        await row.ClickAsync();
        await page.WaitForURLAsync($"**/devices/{deviceId}");
        await Assertions.Expect(page.GetByTestId("device-status")).ToHaveTextAsync("active");
        await Assertions.Expect(page.GetByTestId("events")).ToContainTextAsync("claude-haiku-4-5-20251001");

        // Remove Sonnet from the allowlist.
        var models = Field(page, "models");
        await models.FillAsync("claude-haiku-*");
        await models.PressAsync("Tab");
        await page.GetByTestId("save-policy").ClickAsync();
        await Assertions.Expect(page.GetByTestId("audit")).ToContainTextAsync("policy");
        await ShotAsync(page, "device");

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
        await ShotAsync(page, "revoke-confirmation");
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Revoke" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("device-status")).ToHaveTextAsync("revoked");
        using (var revoked = await _gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}""", bearer: fresh)))
        {
            await Http.AssertErrorAsync(revoked, 401, "authentication_error");
        }

        await page.GotoAsync(_adminUrl + "/usage");
        await page.GetByTestId("total-requests").WaitForAsync();
        await ShotAsync(page, "usage");
        await page.GotoAsync(_adminUrl + "/gateways");
        await Assertions.Expect(page.GetByTestId("gateways")).ToContainTextAsync("closed");
        await ShotAsync(page, "gateways");
    }

    [Fact]
    public async Task Every_page_needs_a_sign_in_and_repeated_failures_lock_the_address_out()
    {
        var page = await _browser.NewPageAsync();
        foreach (var path in new[] { "/", "/devices", "/usage", "/gateways", "/export/usage.csv" })
        {
            await page.GotoAsync(_adminUrl + path);
            Assert.Contains("/login", page.Url);
        }
        await ShotAsync(page, "login");
        for (var i = 0; i < 5; i++)
        {
            await page.FillAsync("input[name=password]", "wrong-" + i);
            await page.ClickAsync("button[type=submit]");
            await page.WaitForURLAsync("**/login?error=*");
        }
        await Assertions.Expect(page.Locator(".login-error")).ToContainTextAsync("Too many failed attempts");
        await page.FillAsync("input[name=password]", Password);
        await page.ClickAsync("button[type=submit]");
        await page.WaitForURLAsync("**/login?error=locked");
    }

    [Fact]
    public async Task The_overview_warns_about_usage_events_postgres_refused()
    {
        var writer = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<ClaudeProxy.Gateway.Usage.UsageWriter>(_gateway.Services);
        writer.Enqueue(UsageWriterFaultTests.Event(model: "claude\0refused"));
        await writer.WaitForDeadLettersAsync(1).WaitAsync(TimeSpan.FromSeconds(60));

        var page = await SignedInPageAsync("/");
        await Assertions.Expect(page.GetByTestId("dead-letters")).ToContainTextAsync("1 usage events were refused by Postgres");
    }
}
