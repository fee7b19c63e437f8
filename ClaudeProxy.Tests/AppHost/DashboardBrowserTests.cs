using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.AppHost;

/// <summary>Aspire's dashboard, as a developer opens it after `aspire run`, in Debian's Chromium.</summary>
[Collection(AppHostCollection.Name)]
public sealed class DashboardBrowserTests
{
    private static readonly string Screenshots = Path.Combine(Repo.Root, "artifacts", "screenshots");

    [Fact]
    public async Task The_dashboard_shows_every_resource_running_and_healthy_and_a_gateway_trace_with_its_redis_call()
    {
        var appHost = await AspireAppHost.StartAsync(dashboard: true);
        try
        {
            // One request through the gateway: its trace should hold the ASP.NET Core request, the Redis admission call
            // and the upstream HTTP call.
            using var gateway = appHost.Client("gateway");
            using var boot = await gateway.PostAsJsonAsync("/bootstrap", new { device_id = "dashboard-" + Guid.NewGuid().ToString("N")[..6] })
                .WaitAsync(TimeSpan.FromSeconds(30));
            var token = JsonDocument.Parse(await boot.Content.ReadAsStringAsync()).RootElement.GetProperty("wrapper_token").GetString();
            using var message = await gateway.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(HttpStatusCode.OK, message.StatusCode);

            Directory.CreateDirectory(Screenshots);
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = "/usr/bin/chromium",
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            });
            var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1600, Height = 1000 } });
            page.SetDefaultTimeout(60_000);

            await page.GotoAsync(appHost.DashboardUrl!);
            var resources = await PollAsync(page, text =>
                AspireAppHost.Services.All(s => Row(text, s) is { } row && row.Contains("Running", StringComparison.Ordinal) && !row.Contains("Unhealthy", StringComparison.Ordinal)
                    && !row.Contains("Starting", StringComparison.Ordinal)) && Row(text, "migrations")?.Contains("Finished", StringComparison.Ordinal) == true);
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Screenshots, "dashboard-resources.png"), FullPage = true });
            Assert.True(resources.Ok, "resources page:\n" + resources.Text);

            await page.GotoAsync(appHost.DashboardUrl + "/traces");
            var traces = await PollAsync(page, text => text.Contains("POST /v1/messages", StringComparison.Ordinal));
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Screenshots, "dashboard-traces.png"), FullPage = true });
            Assert.True(traces.Ok, "traces page:\n" + traces.Text);

            await page.GetByText("POST /v1/messages").First.ClickAsync();
            // The request, the admission script's Redis command (with the redis resource as its peer) and the call upstream.
            var trace = await PollAsync(page, text => text.Contains("redis admit", StringComparison.Ordinal)
                && text.Contains("DATA redis EVAL", StringComparison.Ordinal) && text.Contains("HTTP POST 200", StringComparison.Ordinal));
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Screenshots, "dashboard-gateway-trace.png"), FullPage = true });
            Assert.True(trace.Ok, "trace:\n" + trace.Text);
        }
        finally
        {
            await appHost.DisposeAsync();
        }
        Assert.Empty(await appHost.LeftoverProcessesAsync());
        appHost.DeleteData();
    }

    /// <summary>The text of the grid row that names <paramref name="resource"/>, or null.</summary>
    private static string? Row(string text, string resource) =>
        text.Split('\n').Select((line, i) => (line, i)).Where(l => l.line.Trim() == resource)
            .Select(l => string.Join(' ', text.Split('\n').Skip(l.i).Take(6))).FirstOrDefault();

    /// <summary>Reads the page's text until <paramref name="done"/> holds or a minute passes (the dashboard updates live).</summary>
    private static async Task<(bool Ok, string Text)> PollAsync(IPage page, Func<string, bool> done)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        string text;
        do
        {
            text = await page.Locator("body").InnerTextAsync().WaitAsync(TimeSpan.FromSeconds(30));
            if (done(text))
            {
                return (true, text);
            }
            await page.WaitForTimeoutAsync(500);
        }
        while (DateTime.UtcNow < deadline);
        return (false, text);
    }
}
