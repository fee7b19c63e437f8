using System.Net;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>Resetting a device's key from the admin app, in Debian's Chromium, against the real stack.</summary>
public sealed class DeviceKeyAdminTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private string _db = "";
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _db = await fx.Postgres.CreateDatabaseAsync();
        _gateway = await AdminBrowser.GatewayAsync(fx, _db);
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

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

        var page = await _admin.SignedInPageAsync($"/devices/{device}");
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
