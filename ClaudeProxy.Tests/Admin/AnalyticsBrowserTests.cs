using System.Globalization;
using System.Net;
using System.Text.Json;
using ClaudeProxy.Admin.Components.Charts;
using ClaudeProxy.Contracts;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>
/// The analytics pages in Chromium against usage made through the gateway and the simulator: each page's chart, table
/// and CSV hold what the management API answers, and each says what to do when there is nothing to show.
/// </summary>
public sealed class AnalyticsBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private const string Sonnet = "claude-sonnet-4-5-20250929";
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    private HttpClient Manage()
    {
        var client = new HttpClient { BaseAddress = _gateway.ManagementUrl, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        return client;
    }

    private async Task<T> GetAsync<T>(string path)
    {
        using var manage = Manage();
        using var response = await manage.GetAsync(path).WaitAsync(TimeSpan.FromSeconds(60));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, Json)!;
    }

    private async Task<string> ManualGroupWithAsync(string name, string deviceId)
    {
        using var manage = Manage();
        using var created = await manage.PostAsync("/manage/v1/groups",
            new StringContent(JsonSerializer.Serialize(new { name, source = "manual" }), System.Text.Encoding.UTF8, "application/json")).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("group_id").GetString()!;
        using var added = await manage.PostAsync($"/manage/v1/groups/{id}/members",
            new StringContent(JsonSerializer.Serialize(new { device_id = deviceId }), System.Text.Encoding.UTF8, "application/json")).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.OK, added.StatusCode);
        return id;
    }

    private async Task<HttpStatusCode> SendAsync(string token, string model, params (string Name, string Value)[] headers)
    {
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/messages", $$"""{"model":"{{model}}","max_tokens":64,"messages":[]}""", bearer: token,
            headers: headers)).WaitAsync(TimeSpan.FromSeconds(60));
        await response.Content.ReadAsStringAsync();
        return response.StatusCode;
    }

    private static async Task SelectAsync(IPage page, string testId, string item)
    {
        await page.GetByTestId(testId).ClickAsync();
        await page.Locator(".mud-popover-open .mud-list-item", new PageLocatorOptions { HasText = item }).First.ClickAsync();
    }

    /// <summary>Each body row of a table as its cells' text joined by " | ".</summary>
    private static async Task<List<string>> RowsAsync(IPage page, string tableTestId) =>
        [.. await page.GetByTestId(tableTestId).Locator("tbody tr").EvaluateAllAsync<string[]>(
            "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(td => td.innerText.trim()).join(' | '))")];

    private static string Csv(params string[] cells) => string.Join(',', cells);

    private static string Day(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    private static string Plain(decimal value) => value.ToString("0.############################", CultureInfo.InvariantCulture);

    [Fact]
    public async Task Each_analytics_page_draws_the_usage_made_through_the_gateway_with_its_table_and_csv()
    {
        var deviceId = "analytics-" + Guid.NewGuid().ToString("N")[..6];
        var session = "sess-" + Guid.NewGuid().ToString("N")[..8];
        var groupName = "team-" + Guid.NewGuid().ToString("N")[..6];
        await _gateway.BootstrapAsync(deviceId);
        var groupId = await ManualGroupWithAsync(groupName, deviceId);
        // A token made after the device joined the group, so its requests count for the group.
        var token = await _gateway.BootstrapAsync(deviceId);
        await ChartsBrowserTests.SpendAFractionOfACentAsync(_gateway, token, ("x-claude-code-session-id", session));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(token, Sonnet, ("x-sim-input-tokens", "1200"), ("x-sim-output-tokens", "250"), ("x-sim-cache-5m", "100"),
            ("x-sim-cache-1h", "200"), ("x-sim-cache-read", "4000"), ("x-claude-code-session-id", session), ("x-claude-code-agent-id", "agent-a")));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(token, Sonnet, ("x-sim-input-tokens", "500"), ("x-sim-output-tokens", "40"), ("x-sim-cache-5m", "1000"),
            ("x-sim-cache-read", "20000"), ("x-claude-code-session-id", session), ("x-claude-code-agent-id", "agent-b"), ("x-claude-code-parent-agent-id", "agent-a")));
        Assert.Equal(HttpStatusCode.TooManyRequests, await SendAsync(token, Sonnet, ("x-sim-status", "429")));
        await StackFixture.StoredAsync(_gateway, 4);
        var now = _gateway.Services.GetRequiredService<TimeProvider>().GetUtcNow();
        var today = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var range = $"from={Uri.EscapeDataString(today.AddDays(-29).ToString("o", CultureInfo.InvariantCulture))}" +
            $"&to={Uri.EscapeDataString(today.AddDays(1).ToString("o", CultureInfo.InvariantCulture))}";

        // Spend per day by model: one row per day and model, the CSV the same rows with plain numbers.
        var spend = await GetAsync<SpendAnalytics>($"/manage/v1/analytics/spend?by=model&period=day&limit=20&{range}");
        Assert.Equal(2, spend.Points.Count);
        var page = await _admin.SignedInPageAsync("/analytics/spend");
        await Assertions.Expect(page.GetByTestId("spend-chart").GetByTestId("bar")).ToHaveCountAsync(2);
        Assert.Equal([.. spend.Points.OrderByDescending(p => p.CostUsd).Select(p => $"{Day(p.Bucket)} | {p.Key} | {p.Requests:N0} | {Money.Format(p.CostUsd)}")],
            await RowsAsync(page, "spend-chart-table"));
        Assert.Equal(string.Join("", [Csv("Day", "Model", "Requests", "Cost (USD)") + "\r\n",
                .. spend.Points.OrderByDescending(p => p.CostUsd).Select(p => Csv(Day(p.Bucket) + "T00:00:00Z", p.Key, p.Requests.ToString(CultureInfo.InvariantCulture), Plain(p.CostUsd)) + "\r\n")]),
            await ChartsBrowserTests.DownloadCsvAsync(page, "spend-chart-table-csv"));
        await Assertions.Expect(page.GetByTestId("projected-month-end")).ToHaveTextAsync(Money.Format(spend.Projection.ProjectedMonthEnd));
        await Assertions.Expect(page.GetByTestId("projection")).ToContainTextAsync("projection");
        await AdminBrowser.ShotAsync(page, "analytics-spend");

        // Per month, this month's bar carries the rest of the projection, drawn and listed as such.
        await SelectAsync(page, "spend-period", "month");
        var projected = page.GetByTestId("spend-chart").Locator($"[data-testid=bar][data-series='{SpendChart.ProjectionName}']");
        await Assertions.Expect(projected).ToHaveCountAsync(1);
        // The projection runs on the clock (spend so far over the time elapsed): the page's value lies between the API's
        // before the page drew it and after.
        var later = await GetAsync<SpendAnalytics>($"/manage/v1/analytics/spend?by=model&period=day&limit=20&{range}");
        var drawn = decimal.Parse((await projected.GetAttributeAsync("data-value"))!, CultureInfo.InvariantCulture);
        var rest = new[] { spend, later }.Select(s => (decimal)(s.Projection.ProjectedMonthEnd - s.Projection.SpentThisMonth)).ToArray();
        Assert.InRange(drawn, decimal.Round(rest.Min(), 6) - 0.000001m, decimal.Round(rest.Max(), 6) + 0.000001m);
        await Assertions.Expect(page.GetByTestId("spend-chart-table").Locator("tbody tr").Last).ToContainTextAsync(SpendChart.ProjectionName);
        await AdminBrowser.ShotAsync(page, "analytics-spend-month-projection");

        // By group: the group's name, not its id.
        await SelectAsync(page, "spend-by", "group");
        await Assertions.Expect(page.GetByTestId("spend-totals-table")).ToContainTextAsync(groupName);

        // Prompt cache by device: the stats are the API's total, the table its rows.
        var cache = await GetAsync<CacheAnalytics>($"/manage/v1/analytics/cache?by=device&{range}");
        await page.GotoAsync(_admin.Url + "/analytics/cache");
        await Assertions.Expect(page.GetByTestId("cache-saved")).ToHaveTextAsync(Money.Format(cache.Total.SavedUsd));
        await Assertions.Expect(page.GetByTestId("cache-write-extra")).ToHaveTextAsync(Money.Format(cache.Total.WriteExtraUsd));
        await Assertions.Expect(page.GetByTestId("cache-net")).ToHaveTextAsync(Money.Format(cache.Total.NetSavedUsd));
        await Assertions.Expect(page.GetByTestId("cache-5m")).ToHaveTextAsync("1,100");
        await Assertions.Expect(page.GetByTestId("cache-1h")).ToHaveTextAsync("200");
        var row = cache.Rows.Single();
        Assert.Equal([$"{deviceId} | {deviceId} | {row.Requests:N0} | {Quantity.Percent(Math.Round((decimal)row.HitRatio, 4))} | {Money.Format(row.CostUsd)} | " +
            $"{Money.Format(row.SavedUsd)} | {Money.Format(row.WriteExtraUsd)} | {Money.Format(row.NetSavedUsd)}"], await RowsAsync(page, "cache-chart-table"));
        Assert.Equal(Csv("Device", "Id", "Requests", "Hit ratio", "Cost (USD)", "Saved by reads (USD)", "Extra cost of writes (USD)", "Net saved (USD)") + "\r\n" +
            Csv(deviceId, deviceId, row.Requests.ToString(CultureInfo.InvariantCulture), row.HitRatio.ToString("0.####", CultureInfo.InvariantCulture), Plain(row.CostUsd),
                Plain(row.SavedUsd), Plain(row.WriteExtraUsd), Plain(row.NetSavedUsd)) + "\r\n",
            await ChartsBrowserTests.DownloadCsvAsync(page, "cache-chart-table-csv"));
        await Assertions.Expect(page.GetByTestId("cache-chart").GetByTestId("bar")).ToHaveCountAsync(2);
        await AdminBrowser.ShotAsync(page, "analytics-prompt-cache");

        // Sessions: the session of the week, and its page with the subagents as a tree.
        await page.GotoAsync(_admin.Url + "/analytics/sessions");
        var sessions = await GetAsync<List<SessionSummary>>("/manage/v1/analytics/sessions/top?days=7&limit=10");
        var summary = sessions.Single();
        await Assertions.Expect(page.GetByTestId("sessions-chart-table").Locator("tbody tr")).ToHaveCountAsync(1);
        var cells = await page.GetByTestId("sessions-chart-table").Locator("tbody tr td").AllInnerTextsAsync();
        Assert.Equal(session, cells[0]);
        Assert.Equal(deviceId, cells[2]);
        Assert.Equal(["3", "2", Money.Format(summary.CostUsd), Money.Format(summary.SavedUsd)], cells.Skip(5));
        await AdminBrowser.ShotAsync(page, "analytics-sessions");
        await page.GetByTestId("sessions-chart-table").GetByRole(AriaRole.Link, new() { Name = session }).ClickAsync();
        await page.WaitForURLAsync($"**/analytics/sessions/{session}");
        await Assertions.Expect(page.GetByTestId("session-requests")).ToHaveTextAsync("3");
        await Assertions.Expect(page.GetByTestId("session-subagents")).ToHaveTextAsync("2");
        await Assertions.Expect(page.GetByTestId("session-cost")).ToHaveTextAsync(Money.Format(summary.CostUsd));
        var nodes = page.GetByTestId("agent-tree").GetByTestId("agent-node");
        await Assertions.Expect(nodes).ToHaveCountAsync(3);
        Assert.Equal(["0", "1", "2"], await nodes.EvaluateAllAsync<string[]>("ns => ns.map(n => n.dataset.depth)"));
        Assert.Equal(["", "agent-a", "agent-b"], await nodes.EvaluateAllAsync<string[]>("ns => ns.map(n => n.dataset.agent)"));
        // agent-b sits inside agent-a's list item.
        await Assertions.Expect(page.Locator("[data-agent=agent-a] [data-agent=agent-b]")).ToHaveCountAsync(1);
        Assert.Equal(["main session |  | 0", "agent-a | main session | 1", "agent-b | agent-a | 2"],
            (await RowsAsync(page, "session-chart-table")).Select(r => string.Join(" | ", r.Split(" | ").Take(3))).ToList());
        await AdminBrowser.ShotAsync(page, "analytics-session");

        // Errors and latency: the 429 among four requests, and time to first token for each model answered.
        var errors = await GetAsync<ErrorAnalytics>($"/manage/v1/analytics/errors?from={Uri.EscapeDataString(today.AddDays(-6).ToString("o", CultureInfo.InvariantCulture))}" +
            $"&to={Uri.EscapeDataString(today.AddDays(1).ToString("o", CultureInfo.InvariantCulture))}");
        Assert.Equal(4, errors.Requests);
        await page.GotoAsync(_admin.Url + "/analytics/errors");
        await Assertions.Expect(page.GetByTestId("rate-429")).ToHaveTextAsync("25%");
        await Assertions.Expect(page.GetByTestId("error-rate")).ToHaveTextAsync("25%");
        Assert.Equal(["upstream_429_rate_limit_error | 1 | 25%"], await RowsAsync(page, "error-rates-chart-table"));
        Assert.Equal("Reason,Errors,Rate\r\nupstream_429_rate_limit_error,1,0.25\r\n", await ChartsBrowserTests.DownloadCsvAsync(page, "error-rates-chart-table-csv"));
        Assert.Equal([$"{Day(today)} | upstream_429_rate_limit_error | 1"], await RowsAsync(page, "errors-chart-table"));
        var latency = await GetAsync<LatencyAnalytics>($"/manage/v1/analytics/latency?{range}");
        Assert.Equal(2, latency.Models.Count);
        var latencyRows = await RowsAsync(page, "latency-chart-table");
        Assert.Equal([.. latency.Models.OrderBy(m => m.Model, StringComparer.Ordinal).Select(m => $"{m.Model} | {m.Requests:N0} | {m.TtftP50Ms:N0} ms | {m.TtftP95Ms:N0} ms")],
            latencyRows);
        await Assertions.Expect(page.GetByTestId("latency-chart").GetByTestId("bar")).ToHaveCountAsync(4);
        await AdminBrowser.ShotAsync(page, "analytics-errors-latency");

        // The group's own page draws its spend per day.
        await page.GotoAsync($"{_admin.Url}/groups/{groupId}");
        await Assertions.Expect(page.GetByTestId("spend-chart").GetByTestId("bar")).Not.ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByTestId("spend-chart-table")).ToContainTextAsync(groupName);
        await AdminBrowser.ShotAsync(page, "chart-group");
    }

    [Fact]
    public async Task A_session_id_a_spreadsheet_would_run_as_a_formula_is_text_in_the_csv_and_its_page_opens()
    {
        const string session = "=HYPERLINK(\"evil.example\",\"x\")";
        var token = await _gateway.BootstrapAsync("formula-" + Guid.NewGuid().ToString("N")[..6]);
        await ChartsBrowserTests.SpendAFractionOfACentAsync(_gateway, token, ("x-claude-code-session-id", session));
        await StackFixture.StoredAsync(_gateway, 1);

        var page = await _admin.SignedInPageAsync("/analytics/sessions");
        await Assertions.Expect(page.GetByTestId("sessions-chart-table").Locator("tbody tr")).ToHaveCountAsync(1);
        var csv = await ChartsBrowserTests.DownloadCsvAsync(page, "sessions-chart-table-csv");
        Assert.StartsWith("\"'=HYPERLINK(\"\"evil.example\"\",\"\"x\"\")\",", csv.Split("\r\n")[1]);
        await page.GetByTestId("sessions-chart-table").GetByRole(AriaRole.Link, new() { Name = session }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("session-id")).ToHaveTextAsync("Session " + session);
        await Assertions.Expect(page.GetByTestId("session-requests")).ToHaveTextAsync("1");
    }

    [Fact]
    public async Task Analytics_pages_without_usage_say_what_to_do_next_and_a_bad_range_is_explained()
    {
        var page = await _admin.SignedInPageAsync("/analytics/spend");
        await Assertions.Expect(page.GetByTestId("spend-chart-empty")).ToContainTextAsync("Point Claude Code at the gateway");
        await Assertions.Expect(page.GetByTestId("spend-totals-empty")).ToBeVisibleAsync();
        await AdminBrowser.ShotAsync(page, "analytics-spend-empty");

        await page.GotoAsync(_admin.Url + "/analytics/cache");
        await Assertions.Expect(page.GetByTestId("cache-chart-empty")).ToContainTextAsync("Claude Code caches its prompts by itself");
        await AdminBrowser.ShotAsync(page, "analytics-prompt-cache-empty");

        await page.GotoAsync(_admin.Url + "/analytics/sessions");
        await Assertions.Expect(page.GetByTestId("sessions-chart-empty")).ToContainTextAsync("No Claude Code sessions in the last seven days");
        await AdminBrowser.ShotAsync(page, "analytics-sessions-empty");

        await page.GotoAsync(_admin.Url + "/analytics/sessions/no-such-session");
        await Assertions.Expect(page.GetByTestId("error")).ToContainTextAsync("no session with this id");

        await page.GotoAsync(_admin.Url + "/analytics/errors");
        await Assertions.Expect(page.GetByTestId("error-rates-chart-empty")).ToContainTextAsync("No errors in this period");
        await Assertions.Expect(page.GetByTestId("latency-chart-empty")).ToContainTextAsync("No answered messages in this period");
        await AdminBrowser.ShotAsync(page, "analytics-errors-latency-empty");

        // A range that ends before it starts is explained, not sent.
        var from = page.Locator("[data-testid=range-from] input, input[data-testid=range-from]").First;
        await from.FillAsync("2999-01-01");
        await from.PressAsync("Tab");
        await Assertions.Expect(page.GetByTestId("error")).ToContainTextAsync("The range ends before it starts");
        await AdminBrowser.ShotAsync(page, "analytics-errors-bad-range");
    }
}
