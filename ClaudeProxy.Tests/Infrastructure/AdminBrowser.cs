using ClaudeProxy.Admin;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>The admin app in this process, talking to a gateway with the operator key, and Debian's Chromium to drive it.</summary>
public sealed class AdminBrowser : IAsyncDisposable
{
    public const string Password = "correct horse battery staple";
    private static readonly string Screenshots = Path.Combine(AppContext.BaseDirectory, "screenshots");
    private readonly WebApplication _admin;
    private readonly IPlaywright _playwright;

    private AdminBrowser(WebApplication admin, IPlaywright playwright, IBrowser browser)
    {
        _admin = admin;
        _playwright = playwright;
        Browser = browser;
        Url = admin.Urls.First().TrimEnd('/');
    }

    public IBrowser Browser { get; }

    /// <summary>The admin app's base address, without a trailing slash.</summary>
    public string Url { get; }

    /// <summary>A gateway whose management API accepts the operator key the admin app uses.</summary>
    public static Task<GatewayHost> GatewayAsync(StackFixture fx, string database) =>
        fx.GatewayAsync(database, s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);

    /// <param name="configure">Changes to the admin app's settings (a null value unsets one).</param>
    public static async Task<AdminBrowser> StartAsync(GatewayHost gateway, Action<Dictionary<string, string?>>? configure = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ADMIN_API_KEY"] = TestSecrets.OperatorKey,
            ["ADMIN_PASSWORD"] = Password,
            ["services:gateway:management:0"] = gateway.ManagementUrl.ToString().TrimEnd('/'),
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
        };
        configure?.Invoke(settings);
        var admin = AdminApp.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            b.WebHost.UseUrls("http://127.0.0.1:0");
        });
        await admin.StartAsync();
        IPlaywright? playwright = null;
        try
        {
            Directory.CreateDirectory(Screenshots);
            playwright = await Playwright.CreateAsync();
            return new AdminBrowser(admin, playwright, await LaunchAsync(playwright));
        }
        catch
        {
            playwright?.Dispose();
            await admin.StopAsync();
            await admin.DisposeAsync();
            throw;
        }
    }

    /// <summary>Debian's Chromium, headless, without the background traffic a first run would make.</summary>
    public static Task<IBrowser> LaunchAsync(IPlaywright playwright)
    {
        Directory.CreateDirectory(Screenshots);
        return playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
    }

    /// <summary>Opens <paramref name="path"/>, signs in on the login page it is sent to, and returns once it is back past the login.</summary>
    public async Task<IPage> SignedInPageAsync(string path = "/")
    {
        var page = await Browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync(Url + path);
        await page.WaitForURLAsync("**/login**");
        await page.FillAsync("input[name=password]", Password);
        await page.ClickAsync("button[type=submit]");
        // Past the login once the next page's document is there: its own content is awaited by each test, and on a
        // loaded machine the load event can come long after (or, once a resource stalls, not at all).
        await page.WaitForURLAsync(url => !url.Contains("/login", StringComparison.Ordinal),
            new PageWaitForURLOptions { WaitUntil = WaitUntilState.DOMContentLoaded, Timeout = 60_000 });
        return page;
    }

    /// <summary>Saves a full-page screenshot as screenshots/<paramref name="name"/>.png next to the test binaries.</summary>
    public static Task<byte[]> ShotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Screenshots, name + ".png"), FullPage = true });

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright.Dispose();
        await _admin.StopAsync();
        await _admin.DisposeAsync();
    }
}
