using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Limits;

/// <summary>
/// The reservation is the real worst case: input, max_tokens of output, and every web search the request's tools
/// allow, at the model's prices or, for a model without a price, at the highest prices (and so is the charge).
/// </summary>
public sealed class ReservationTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static string Haiku(string tools) =>
        $$"""{"model":"claude-haiku-4-5-20251001","max_tokens":100,"tools":[{{tools}}],"messages":[{"role":"user","content":"Find it"}]}""";

    private static async Task<string?> RefusalAsync(GatewayHost gateway, string token, string body)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token));
        if (response.StatusCode == HttpStatusCode.OK)
        {
            return null;
        }
        return (await Http.AssertErrorAsync(response, 429, "rate_limit_error")).Message;
    }

    [Fact]
    public async Task Web_searches_the_tools_allow_are_reserved_at_ten_dollars_a_thousand()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync());
        // Haiku 4.5, 100 output tokens at $5/M and some 60 input tokens at $1/M: about $0.00056 before any search.
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId(), claims: new Dictionary<string, object> { ["spend_cap"] = 0.03 });

        // Five searches are $0.05, over the $0.03 cap; a search tool without max_uses is reserved ten searches.
        Assert.Contains("spend cap", await RefusalAsync(gateway, token, Haiku("""{"type":"web_search_20250305","name":"web_search","max_uses":5}""")));
        Assert.Contains("spend cap", await RefusalAsync(gateway, token, Haiku("""{"type":"web_search_20250305","name":"web_search"}""")));
        Assert.Contains("spend cap", await RefusalAsync(gateway, token,
            Haiku("""{"type":"web_search_20250305","name":"web_search","max_uses":2},{"type":"web_search_20250305","name":"web_search","max_uses":2}""")));
        // Two searches, $0.02, fit; so does a web fetch, which has no price beyond the tokens it fetches.
        Assert.Null(await RefusalAsync(gateway, token, Haiku("""{"type":"web_search_20250305","name":"web_search","max_uses":2}""")));
        Assert.Null(await RefusalAsync(gateway, token, Haiku("""{"type":"web_fetch_20250910","name":"web_fetch","max_uses":5}""")));
        // Unless it says how much each fetch may bring: 5 x 10,000 tokens at $1/M is another $0.05 of input.
        Assert.Contains("spend cap", await RefusalAsync(gateway, token,
            Haiku("""{"type":"web_fetch_20250910","name":"web_fetch","max_uses":5,"max_content_tokens":10000}""")));
    }

    [Fact]
    public async Task A_model_without_a_price_is_reserved_and_charged_at_the_highest_prices_and_marked_estimated()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);
        var device = TestSecrets.DeviceId();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = 0.05 });

        // 1,000 output tokens at the highest output price in the book ($75/M) is $0.075: over the cap.
        Assert.Contains("spend cap", await RefusalAsync(gateway, token, """{"model":"claude-mystery-9","max_tokens":1000,"messages":[]}"""));
        Assert.Null(await RefusalAsync(gateway, token, """{"model":"claude-mystery-9","max_tokens":100,"messages":[]}"""));
        await StackFixture.StoredAsync(gateway, 1);
        // The simulator's 25 input and 12 output tokens at $15/M and $75/M.
        Assert.Equal(0.001275m, await fx.ScalarAsync<decimal>(db, "SELECT cost_usd FROM usage_events WHERE device_id = @d AND cost_estimated", ("d", device)));

        using var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        using var events = await manage.GetAsync($"/manage/v1/usage/events?device={device}");
        using var json = JsonDocument.Parse(await events.Content.ReadAsStringAsync());
        var row = json.RootElement.GetProperty("data").EnumerateArray().Single();
        Assert.True(row.GetProperty("cost_estimated").GetBoolean());
        Assert.False(row.GetProperty("output_estimated").GetBoolean());
        Assert.Equal(0.001275m, row.GetProperty("cost_usd").GetDecimal());
    }

    [Fact]
    public void Only_model_ids_of_known_families_are_remembered_and_only_so_many()
    {
        var prices = PriceBook.Load(new ConfigurationBuilder().Build());
        for (var i = 0; i < 20_000; i++)
        {
            Assert.Null(prices.Find("claude-invented-" + i));
        }
        Assert.Equal(0, prices.Remembered);
        for (var i = 0; i < 5_000; i++)
        {
            Assert.Equal("sonnet", prices.Find("claude-sonnet-4-" + i)!.Family);
        }
        Assert.InRange(prices.Remembered, 1, 1024);
        Assert.Equal(75m, prices.Highest.Output);
        Assert.Equal(15m, prices.Highest.Input);
    }
}
