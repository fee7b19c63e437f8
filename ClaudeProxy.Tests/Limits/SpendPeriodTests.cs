using System.Globalization;
using System.Net;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Limits;

/// <summary>
/// <c>SPEND_CAP_PERIOD</c>: a cap counts what was spent in the current UTC day, ISO week (from Monday) or month, and
/// nothing spent before that period began. The gateway's host does not take a clock from outside, so the periods
/// are checked at their exact edges here, and end to end against today's real boundary.
/// </summary>
public sealed class SpendPeriodTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static DateTimeOffset At(string text) => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);

    private static DateTimeOffset Day(string text) => new(DateTime.ParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture), TimeSpan.Zero);

    private static void AssertPeriod(SpendPeriod period, string now, string start, string end, string id)
    {
        var (s, e, i) = SpendPeriods.Of(period, At(now));
        Assert.Equal(Day(start), s);
        Assert.Equal(Day(end), e);
        Assert.Equal(TimeSpan.Zero, s.Offset);
        Assert.Equal(id, i);
    }

    [Theory]
    [InlineData("2026-11-26T00:00:00Z", "2026-11-26", "2026-11-27", "20261126")]
    [InlineData("2026-11-26T23:59:59.9999999Z", "2026-11-26", "2026-11-27", "20261126")]
    [InlineData("2026-11-27T00:00:00Z", "2026-11-27", "2026-11-28", "20261127")]
    [InlineData("2026-12-31T23:59:59.9999999Z", "2026-12-31", "2027-01-01", "20261231")]
    [InlineData("2027-01-01T00:00:00Z", "2027-01-01", "2027-01-02", "20270101")]
    [InlineData("2028-02-29T12:00:00Z", "2028-02-29", "2028-03-01", "20280229")]
    // 01:00 in UTC+2 is still the previous day in UTC, and UTC decides.
    [InlineData("2026-11-27T01:00:00+02:00", "2026-11-26", "2026-11-27", "20261126")]
    public void A_day_runs_from_midnight_to_midnight_utc(string now, string start, string end, string id) =>
        AssertPeriod(SpendPeriod.Day, now, start, end, id);

    [Theory]
    [InlineData("2026-11-23T00:00:00Z", "2026-11-23", "2026-11-30", "w20261123")] // a Monday
    [InlineData("2026-11-29T23:59:59.9999999Z", "2026-11-23", "2026-11-30", "w20261123")] // the Sunday after
    [InlineData("2026-11-30T00:00:00Z", "2026-11-30", "2026-12-07", "w20261130")]
    // A week across New Year is one period: the Thursday before and the Sunday after share its Monday.
    [InlineData("2026-12-31T12:00:00Z", "2026-12-28", "2027-01-04", "w20261228")]
    [InlineData("2027-01-03T23:59:59.9999999Z", "2026-12-28", "2027-01-04", "w20261228")]
    [InlineData("2027-01-04T00:00:00Z", "2027-01-04", "2027-01-11", "w20270104")]
    // Monday 01:00 in UTC+2 is still Sunday in UTC: last week's period.
    [InlineData("2026-11-30T01:00:00+02:00", "2026-11-23", "2026-11-30", "w20261123")]
    public void A_week_starts_on_monday_utc(string now, string start, string end, string id) =>
        AssertPeriod(SpendPeriod.Week, now, start, end, id);

    [Theory]
    [InlineData("2026-11-01T00:00:00Z", "2026-11-01", "2026-12-01", "202611")]
    [InlineData("2026-11-30T23:59:59.9999999Z", "2026-11-01", "2026-12-01", "202611")]
    [InlineData("2026-12-01T00:00:00Z", "2026-12-01", "2027-01-01", "202612")]
    [InlineData("2026-12-31T23:59:59.9999999Z", "2026-12-01", "2027-01-01", "202612")]
    [InlineData("2027-01-01T00:00:00Z", "2027-01-01", "2027-02-01", "202701")]
    [InlineData("2027-02-28T23:59:59.9999999Z", "2027-02-01", "2027-03-01", "202702")]
    [InlineData("2028-02-29T23:59:59.9999999Z", "2028-02-01", "2028-03-01", "202802")] // leap year
    [InlineData("2028-03-01T00:00:00Z", "2028-03-01", "2028-04-01", "202803")]
    [InlineData("2026-12-01T01:00:00+02:00", "2026-11-01", "2026-12-01", "202611")]
    public void A_month_runs_to_its_last_day_utc(string now, string start, string end, string id) =>
        AssertPeriod(SpendPeriod.Month, now, start, end, id);

    [Theory]
    [InlineData(SpendPeriod.Day)]
    [InlineData(SpendPeriod.Week)]
    [InlineData(SpendPeriod.Month)]
    public void Periods_follow_each_other_without_gap_or_overlap(SpendPeriod period)
    {
        // Over three years, hour by hour: every moment lies in its period, the last tick of a period and the first
        // of the next get different counters, and each period ends where the next begins.
        for (var now = At("2026-01-01T00:30:00Z"); now < At("2029-01-01T00:00:00Z"); now = now.AddHours(1))
        {
            var (start, end, id) = SpendPeriods.Of(period, now);
            Assert.True(start <= now && now < end, $"{now:o} is outside its {period} [{start:o}, {end:o})");
            var (lastStart, _, lastId) = SpendPeriods.Of(period, end - TimeSpan.FromTicks(1));
            Assert.Equal((start, id), (lastStart, lastId));
            var (nextStart, _, nextId) = SpendPeriods.Of(period, end);
            Assert.Equal(end, nextStart);
            Assert.NotEqual(id, nextId);
        }
    }

    [Theory]
    [InlineData("day")]
    [InlineData("week")]
    [InlineData("month")]
    public async Task Spend_before_the_period_began_does_not_count_spend_from_its_first_moment_does(string setting)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["SPEND_CAP_PERIOD"] = setting;
            s["DEFAULT_SPEND_CAP"] = "1";
        });
        var period = setting switch { "day" => SpendPeriod.Day, "week" => SpendPeriod.Week, _ => SpendPeriod.Month };
        var (start, _, _) = SpendPeriods.Of(period, TimeProvider.System.GetUtcNow());
        var before = TestSecrets.DeviceId("before");
        var within = TestSecrets.DeviceId("within");
        var beforeToken = await gateway.BootstrapAsync(before);
        var withinToken = await gateway.BootstrapAsync(within);

        // Five dollars each against a one-dollar cap: one microsecond before the period began, and at its first moment.
        var sink = gateway.Services.GetRequiredService<IUsageSink>();
        sink.Enqueue(Spent(before, start - TimeSpan.FromMicroseconds(1)));
        sink.Enqueue(Spent(within, start));
        await StackFixture.StoredAsync(gateway, 2);

        using (var admitted = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: beforeToken)))
        {
            Assert.True(admitted.StatusCode == HttpStatusCode.OK, $"last {setting}'s spend counted against this {setting}: {(int)admitted.StatusCode} {await admitted.Content.ReadAsStringAsync()}");
        }
        using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: withinToken));
        var (_, message) = await Http.AssertErrorAsync(refused, 429, "rate_limit_error");
        Assert.Contains("spend cap", message);
        Assert.Contains($"per {setting}", message);
    }

    private static UsageEvent Spent(string device, DateTimeOffset at) => new()
    {
        Id = Guid.CreateVersion7(),
        Time = at,
        DeviceId = device,
        UserId = device,
        OrgId = "default",
        Model = "claude-sonnet-4-5-20250929",
        Endpoint = "messages",
        Status = 200,
        Streamed = false,
        InputTokens = 1000,
        OutputTokens = 1000,
        CostUsd = 5m,
        CorrelationId = "spend-" + Guid.NewGuid().ToString("N"),
    };

    [Fact]
    public void A_groups_period_follows_its_time_zone_and_its_counter_differs_from_the_utc_one()
    {
        var paris = TimeZoneInfo.FindSystemTimeZoneById("Europe/Paris");
        // 30 November 23:30 UTC is already 1 December in Paris.
        var now = new DateTimeOffset(2026, 11, 30, 23, 30, 0, TimeSpan.Zero);
        var (start, end, id) = SpendPeriods.Of(SpendPeriod.Month, now, paris);
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 23, 0, 0, TimeSpan.Zero), start);
        Assert.Equal(new DateTimeOffset(2026, 12, 31, 23, 0, 0, TimeSpan.Zero), end);
        Assert.NotEqual(SpendPeriods.Of(SpendPeriod.Month, now).Id, id);
        Assert.StartsWith("202612@", id);
        // A day in New York across the change to daylight saving time is 23 hours long.
        var newYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
        var (dayStart, dayEnd, _) = SpendPeriods.Of(SpendPeriod.Day, new DateTimeOffset(2026, 3, 8, 12, 0, 0, TimeSpan.Zero), newYork);
        Assert.Equal(TimeSpan.FromHours(23), dayEnd - dayStart);
        Assert.Null(SpendPeriods.Zone("Not/AZone"));
    }
}
