namespace ClaudeProxy.Gateway.Limits;

/// <summary>The UTC spend period a moment falls in: its start, its end and a short id for counter keys.</summary>
public static class SpendPeriods
{
    public static (DateTimeOffset Start, DateTimeOffset End, string Id) Of(SpendPeriod period, DateTimeOffset now)
    {
        var day = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        return period switch
        {
            SpendPeriod.Day => (day, day.AddDays(1), day.ToString("yyyyMMdd")),
            // ISO weeks start on Monday.
            SpendPeriod.Week => WeekOf(day),
            _ => (new DateTimeOffset(day.Year, day.Month, 1, 0, 0, 0, TimeSpan.Zero),
                  new DateTimeOffset(day.Year, day.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1), day.ToString("yyyyMM")),
        };
    }

    private static (DateTimeOffset, DateTimeOffset, string) WeekOf(DateTimeOffset day)
    {
        var start = day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
        return (start, start.AddDays(7), "w" + start.ToString("yyyyMMdd"));
    }
}
