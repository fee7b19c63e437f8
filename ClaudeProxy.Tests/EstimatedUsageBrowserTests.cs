using System.Net;
using ClaudeProxy.Admin;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests;

/// <summary>The usage explorer marks rows whose cost or output the gateway estimated, in Debian's Chromium.</summary>
public sealed class EstimatedUsageBrowserTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string Password = "correct horse battery staple";

    [Fact]
    public async Task Estimated_costs_and_outputs_are_marked_in_the_usage_explorer()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["ADMIN_API_KEY"] = ManagementApiTests.OperatorKey);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        using (var unpriced = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-mystery-9","max_tokens":10,"messages":[]}""", bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, unpriced.StatusCode);
        }
        using (var cut = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-error-after", "5"))))
        {
            Assert.Equal(HttpStatusCode.OK, cut.StatusCode);
            await cut.Content.ReadAsStringAsync();
        }
        using (var plain = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }
        await StackFixture.StoredAsync(gateway, 3);

        var admin = AdminApp.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["ADMIN_API_KEY"] = ManagementApiTests.OperatorKey,
                ["ADMIN_PASSWORD"] = Password,
                ["services:gateway:management:0"] = gateway.ManagementUrl.ToString().TrimEnd('/'),
                ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
            });
            b.WebHost.UseUrls("http://127.0.0.1:0");
        });
        await admin.StartAsync();
        try
        {
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = "/usr/bin/chromium",
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            });
            var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
            var url = admin.Urls.First().TrimEnd('/');
            await page.GotoAsync(url + "/usage");
            await page.WaitForURLAsync("**/login**");
            await page.FillAsync("input[name=password]", Password);
            await page.ClickAsync("button[type=submit]");
            await page.WaitForURLAsync(u => !u.Contains("/login", StringComparison.Ordinal));

            var rows = page.Locator("[data-testid=events] tbody tr");
            await Assertions.Expect(rows).ToHaveCountAsync(3);
            var unpricedRow = rows.Filter(new LocatorFilterOptions { HasText = "claude-mystery-9" });
            await Assertions.Expect(unpricedRow.GetByTestId("cost-estimated")).ToHaveTextAsync("estimated");
            await Assertions.Expect(unpricedRow.GetByTestId("output-estimated")).ToHaveCountAsync(0);
            await Assertions.Expect(page.GetByTestId("output-estimated")).ToHaveCountAsync(1);
            await Assertions.Expect(page.GetByTestId("cost-estimated")).ToHaveCountAsync(1);
            var screenshots = Path.Combine(AppContext.BaseDirectory, "screenshots");
            Directory.CreateDirectory(screenshots);
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(screenshots, "usage-estimated.png"), FullPage = true });
        }
        finally
        {
            await admin.StopAsync();
            await admin.DisposeAsync();
        }
    }
}
