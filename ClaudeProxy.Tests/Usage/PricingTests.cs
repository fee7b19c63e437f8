using ClaudeProxy.Gateway.Usage;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Usage;

/// <summary>Each price class, computed here by hand from the published per-million prices.</summary>
public sealed class PricingTests
{
    private static readonly PriceBook Prices = PriceBook.Load(new ConfigurationBuilder().Build());

    private static UsageCounts Usage(long input, long output, long w5 = 0, long w1 = 0, long read = 0, long searches = 0) => new()
    {
        Input = input, Output = output, CacheCreation = w5 + w1, CacheWrite5m = w5, CacheWrite1h = w1, CacheRead = read, WebSearches = searches,
    };

    [Theory]
    // model, then USD per million: input, 5-minute cache write, 1-hour cache write, cache read, output
    [InlineData("claude-opus-4-5-20251101", 5, 6.25, 10, 0.50, 25)]
    [InlineData("claude-opus-4-6", 5, 6.25, 10, 0.50, 25)]
    [InlineData("claude-opus-5", 5, 6.25, 10, 0.50, 25)]
    [InlineData("claude-opus-4-1-20250805", 15, 18.75, 30, 1.50, 75)]
    [InlineData("claude-opus-4-20250514", 15, 18.75, 30, 1.50, 75)]
    [InlineData("claude-3-opus-20240229", 15, 18.75, 30, 1.50, 75)]
    [InlineData("claude-sonnet-4-5-20250929", 3, 3.75, 6, 0.30, 15)]
    [InlineData("claude-sonnet-4-20250514", 3, 3.75, 6, 0.30, 15)]
    [InlineData("claude-3-7-sonnet-20250219", 3, 3.75, 6, 0.30, 15)]
    [InlineData("claude-haiku-4-5-20251001", 1, 1.25, 2, 0.10, 5)]
    [InlineData("claude-3-5-haiku-20241022", 0.80, 1, 1.60, 0.08, 4)]
    [InlineData("claude-3-haiku-20240307", 0.25, 0.30, 0.50, 0.03, 1.25)]
    public void Every_price_class_costs_what_the_price_list_says(string model, double input, double write5m, double write1h, double read, double output)
    {
        // 1,000,000 plain input, 2,000,000 5-minute writes, 3,000,000 1-hour writes, 4,000,000 reads, 500,000 output.
        var usage = Usage(1_000_000, 500_000, 2_000_000, 3_000_000, 4_000_000);
        var expected = 1 * (decimal)input + 2 * (decimal)write5m + 3 * (decimal)write1h + 4 * (decimal)read + 0.5m * (decimal)output;
        Assert.Equal(expected, Prices.Cost(model, usage));
    }

    [Fact]
    public void A_small_sonnet_request_to_the_micro_dollar()
    {
        // 1,200 input at $3/M, 100 5-min writes at $3.75/M, 200 1-h writes at $6/M, 4,000 reads at $0.30/M, 250 output at $15/M.
        var cost = Prices.Cost("claude-sonnet-4-5", Usage(1200, 250, 100, 200, 4000));
        Assert.Equal(0.0036m + 0.000375m + 0.0012m + 0.0012m + 0.00375m, cost);
    }

    [Fact]
    public void Cache_writes_without_a_breakdown_are_priced_as_five_minute_writes()
    {
        var usage = new UsageCounts { Input = 0, Output = 0, CacheCreation = 1_000_000 };
        Assert.Equal(3.75m, Prices.Cost("claude-sonnet-4-5", usage));
    }

    [Fact]
    public void Web_searches_cost_ten_dollars_a_thousand()
    {
        Assert.Equal(0.02m, Prices.Cost("claude-haiku-4-5", Usage(0, 0, searches: 2)));
    }

    [Theory]
    [InlineData("claude-unknown-9")]
    [InlineData("gpt-4o")]
    [InlineData("claude-3-5-sonnet-20241022")]
    public void A_model_with_no_price_has_a_null_cost(string model)
    {
        Assert.Null(Prices.Cost(model, Usage(100, 100)));
    }

    [Fact]
    public void The_pricing_file_says_where_its_prices_come_from_and_when()
    {
        Assert.Contains("pricing", Prices.Source);
        Assert.Equal("2026-11-24", Prices.AsOf);
    }
}
