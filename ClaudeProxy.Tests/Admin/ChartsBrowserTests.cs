using System.Net;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>The spend charts of the Overview, Device and Usage pages in Chromium: small amounts drawn readably, with their table and CSV.</summary>
public sealed class ChartsBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    /// <summary>1,000 input tokens and 80 output tokens of Haiku 4.5: $0.001 + $0.0004.</summary>
    internal static async Task SpendAFractionOfACentAsync(GatewayHost gateway, string token, params (string Name, string Value)[] extra)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5","max_tokens":80,"messages":[]}""", bearer: token,
            headers: [("x-sim-input-tokens", "1000"), ("x-sim-output-tokens", "80"), .. extra]));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task A_day_that_cost_a_fraction_of_a_cent_fills_the_chart_and_its_table_and_csv_say_exactly_that()
    {
        var deviceId = "chart-" + Guid.NewGuid().ToString("N")[..6];
        await SpendAFractionOfACentAsync(_gateway, await _gateway.BootstrapAsync(deviceId));
        await StackFixture.StoredAsync(_gateway, 1);
        var today = _gateway.Services.GetRequiredService<TimeProvider>().GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

        var page = await _admin.SignedInPageAsync("/");
        var model = await AssertFractionOfACentAsync(page, "spend-chart", today);
        await AdminBrowser.ShotAsync(page, "chart-overview-fraction-of-a-cent");

        await page.GotoAsync($"{_admin.Url}/devices/{deviceId}");
        Assert.Equal(model, await AssertFractionOfACentAsync(page, "spend-chart", today));
        await AdminBrowser.ShotAsync(page, "chart-device-fraction-of-a-cent");

        await page.GotoAsync($"{_admin.Url}/usage");
        Assert.Equal(model, await AssertFractionOfACentAsync(page, "spend-chart", today));
        await AdminBrowser.ShotAsync(page, "chart-usage-fraction-of-a-cent");
    }

    /// <summary>The chart's axis reads in fractions of a cent, its one bar stands well above the baseline, and table and CSV hold that day; returns the model.</summary>
    private static async Task<string> AssertFractionOfACentAsync(IPage page, string testId, string today)
    {
        var chart = page.GetByTestId(testId);
        var bar = chart.GetByTestId("bar");
        await Assertions.Expect(bar).ToHaveCountAsync(1);
        Assert.Equal(["$0", "$0.0005", "$0.001", "$0.0015"], await chart.GetByTestId("y-tick").AllTextContentsAsync());
        Assert.Equal("0.0014", await bar.GetAttributeAsync("data-value"));
        var plot = (await chart.GetByTestId("plot-area").BoundingBoxAsync())!;
        var drawn = (await bar.BoundingBoxAsync())!;
        // 0.0014 of an axis that ends at 0.0015: 93 % of the plot's height, standing on its baseline.
        Assert.InRange(drawn.Height / plot.Height, 0.90, 0.96);
        Assert.InRange(drawn.Y + drawn.Height, plot.Y + plot.Height - 1, plot.Y + plot.Height + 1);

        var table = page.GetByTestId(testId + "-table");
        Assert.Equal(["Day", "Model", "Requests", "Cost (USD)"], await table.Locator("thead th").AllInnerTextsAsync());
        var cells = await table.Locator("tbody tr td").AllInnerTextsAsync();
        Assert.Equal(4, cells.Count);
        Assert.Equal(today, cells[0]);
        Assert.StartsWith("claude-haiku-4-5", cells[1]);
        Assert.Equal(["1", "$0.0014"], cells.Skip(2));

        var csv = await DownloadCsvAsync(page, testId + "-table-csv");
        Assert.Equal($"Day,Model,Requests,Cost (USD)\r\n{today}T00:00:00Z,{cells[1]},1,0.0014\r\n", csv);
        return cells[1];
    }

    /// <summary>Clicks the CSV button carrying <paramref name="testId"/> and returns the file the browser saved.</summary>
    internal static async Task<string> DownloadCsvAsync(IPage page, string testId)
    {
        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByTestId(testId).ClickAsync(), new PageRunAndWaitForDownloadOptions { Timeout = 30_000 });
        Assert.EndsWith(".csv", download.SuggestedFilename);
        return await File.ReadAllTextAsync((await download.PathAsync())!).WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Charts_without_usage_say_what_to_do_next()
    {
        var deviceId = "quiet-" + Guid.NewGuid().ToString("N")[..6];
        await _gateway.BootstrapAsync(deviceId);

        var page = await _admin.SignedInPageAsync("/");
        await Assertions.Expect(page.GetByTestId("spend-chart-empty")).ToContainTextAsync("No requests in this period. Point Claude Code at the gateway");
        await Assertions.Expect(page.GetByTestId("spend-chart-table")).ToHaveCountAsync(0);
        await AdminBrowser.ShotAsync(page, "chart-overview-empty");

        await page.GotoAsync($"{_admin.Url}/devices/{deviceId}");
        await Assertions.Expect(page.GetByTestId("spend-chart-empty")).ToContainTextAsync("This device has made no requests in the last 31 days");
        await AdminBrowser.ShotAsync(page, "chart-device-empty");
    }
}
