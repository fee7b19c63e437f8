using System.Net;
using ClaudeProxy.Admin;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests;

/// <summary>Resetting a device's key from the admin app, in Debian's Chromium, against the real stack.</summary>
public sealed class DeviceKeyAdminTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private const string Password = "correct horse battery staple";
    private GatewayHost _gateway = null!;
    private string _db = "";
    private WebApplication _admin = null!;
    private string _adminUrl = "";
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        _db = await fx.Postgres.CreateDatabaseAsync();
        _gateway = await fx.GatewayAsync(_db, s => s["ADMIN_API_KEY"] = ManagementApiTests.OperatorKey);
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

    [Fact]
    public async Task An_operator_resets_a_device_key_after_confirming_and_the_device_enrols_a_new_one()
    {
        using var lost = new DeviceSigner();
        using var replacement = new DeviceSigner();
        var device = TestSecrets.DeviceId("laptop");
        using (var enrol = await _gateway.Client.SendAsync(lost.Post("/bootstrap", lost.EnrolBody(device))))
        {
            Assert.Equal(HttpStatusCode.OK, enrol.StatusCode);
        }

        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync($"{_adminUrl}/devices/{device}");
        await page.WaitForURLAsync("**/login**");
        await page.FillAsync("input[name=password]", Password);
        await page.ClickAsync("button[type=submit]");
        await page.WaitForURLAsync($"**/devices/{device}");
        await page.GetByTestId("device-key").WaitForAsync();
        await Assertions.Expect(page.GetByTestId("device-key")).ToContainTextAsync("p256");

        // Cancelling changes nothing.
        await page.GetByTestId("reset-key").ClickAsync();
        await page.Locator(".mud-dialog").WaitForAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Cancel" }).ClickAsync();
        await Assertions.Expect(page.Locator(".mud-dialog")).ToHaveCountAsync(0);
        Assert.Equal(lost.PublicKey, await fx.ScalarAsync<object>(_db, "SELECT public_key FROM devices WHERE device_id = @id", ("id", device)));

        await page.GetByTestId("reset-key").ClickAsync();
        await page.Locator(".mud-dialog").WaitForAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Reset key" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("device-key")).ToContainTextAsync("none enrolled");
        await Assertions.Expect(page.GetByTestId("reset-key")).ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByTestId("audit")).ToContainTextAsync("reset_key");
        Assert.IsType<DBNull>(await fx.ScalarAsync<object>(_db, "SELECT public_key FROM devices WHERE device_id = @id", ("id", device)));

        using var again = await _gateway.Client.SendAsync(replacement.Post("/bootstrap", replacement.EnrolBody(device)));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }
}
