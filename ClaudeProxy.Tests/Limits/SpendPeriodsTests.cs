using ClaudeProxy.Gateway.Limits;

namespace ClaudeProxy.Tests.Limits;

/// <summary>The UTC spend period a moment falls in (pure: no server).</summary>
public sealed class SpendPeriodsTests
{
    private static DateTimeOffset Utc(string text) => DateTimeOffset.Parse(text, System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("2026-11-26T13:45:00Z", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", "20261126")]
    [InlineData("2026-12-31T23:59:59.999Z", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z", "20261231")]
    // A local time east of UTC: the period is the UTC day, not the local one.
    [InlineData("2026-11-27T01:30:00+03:00", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", "20261126")]
    public void A_day_is_the_utc_calendar_day(string now, string start, string end, string id) =>
        Assert.Equal((Utc(start), Utc(end), id), SpendPeriods.Of(SpendPeriod.Day, Utc(now)));

    [Theory]
    // Thursday 26 November 2026 is in the ISO week starting Monday the 23rd.
    [InlineData("2026-11-26T12:00:00Z", "2026-11-23T00:00:00Z")]
    [InlineData("2026-11-23T00:00:00Z", "2026-11-23T00:00:00Z")]
    // Sunday belongs to the week that began the Monday before.
    [InlineData("2026-11-29T23:59:59Z", "2026-11-23T00:00:00Z")]
    // A week across the new year.
    [InlineData("2027-01-01T08:00:00Z", "2026-12-28T00:00:00Z")]
    public void A_week_starts_on_monday(string now, string start)
    {
        var (s, e, id) = SpendPeriods.Of(SpendPeriod.Week, Utc(now));
        Assert.Equal(Utc(start), s);
        Assert.Equal(Utc(start).AddDays(7), e);
        Assert.Equal("w" + Utc(start).ToString("yyyyMMdd", System.Globalization.CultureInfo.InvariantCulture), id);
    }

    [Theory]
    [InlineData("2026-11-26T12:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "202611")]
    [InlineData("2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", "202612")]
    [InlineData("2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", "202802")]
    public void A_month_is_the_utc_calendar_month(string now, string start, string end, string id) =>
        Assert.Equal((Utc(start), Utc(end), id), SpendPeriods.Of(SpendPeriod.Month, Utc(now)));

    [Fact]
    public void The_end_of_a_period_is_the_start_of_the_next()
    {
        foreach (var period in Enum.GetValues<SpendPeriod>())
        {
            var (_, end, id) = SpendPeriods.Of(period, Utc("2026-11-26T12:00:00Z"));
            var (nextStart, _, nextId) = SpendPeriods.Of(period, end);
            Assert.Equal(end, nextStart);
            Assert.NotEqual(id, nextId);
            Assert.Equal(id, SpendPeriods.Of(period, end.AddTicks(-1)).Id);
        }
    }
}
