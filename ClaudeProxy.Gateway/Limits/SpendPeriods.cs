namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// The spend period a moment falls in: its start, its end and a short id for counter keys. Periods are counted in a
/// time zone (UTC unless a group sets another): a day starts at local midnight, a week on local Monday, a month on
/// the local first. The id of a UTC period is its date (<c>yyyyMMdd</c>, <c>wyyyyMMdd</c>, <c>yyyyMM</c>); another
/// zone's adds the start instant, so two zones whose periods start at the same instant share a counter.
/// </summary>
public static class SpendPeriods
{
    public static (DateTimeOffset Start, DateTimeOffset End, string Id) Of(SpendPeriod period, DateTimeOffset now) => Of(period, now, TimeZoneInfo.Utc);

    public static (DateTimeOffset Start, DateTimeOffset End, string Id) Of(SpendPeriod period, DateTimeOffset now, TimeZoneInfo zone)
    {
        var utc = zone == TimeZoneInfo.Utc;
        var local = utc ? now.UtcDateTime : TimeZoneInfo.ConvertTime(now, zone).DateTime;
        var day = local.Date;
        // ISO weeks start on Monday.
        var monday = day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
        var first = new DateTime(day.Year, day.Month, 1);
        var (start, end, id) = period switch
        {
            SpendPeriod.Day => (day, day.AddDays(1), day.ToString("yyyyMMdd")),
            SpendPeriod.Week => (monday, monday.AddDays(7), "w" + monday.ToString("yyyyMMdd")),
            _ => (first, first.AddMonths(1), day.ToString("yyyyMM")),
        };
        if (utc)
        {
            return (new DateTimeOffset(start, TimeSpan.Zero), new DateTimeOffset(end, TimeSpan.Zero), id);
        }
        var startAt = AtLocal(start, zone);
        return (startAt, AtLocal(end, zone), id + "@" + startAt.ToUnixTimeSeconds());
    }

    /// <summary>The organisation's period, or a group's, by the names the spend-limits API uses (daily, weekly, monthly) or the settings' (day, week, month).</summary>
    public static SpendPeriod? Parse(string? name) => name?.ToLowerInvariant() switch
    {
        "daily" or "day" => SpendPeriod.Day,
        "weekly" or "week" => SpendPeriod.Week,
        "monthly" or "month" => SpendPeriod.Month,
        _ => null,
    };

    /// <summary>The spend-limits API's name of a period.</summary>
    public static string ApiName(SpendPeriod period) => period switch
    {
        SpendPeriod.Day => "daily",
        SpendPeriod.Week => "weekly",
        _ => "monthly",
    };

    /// <summary>A time zone by its IANA id, or null when this machine does not know it.</summary>
    public static TimeZoneInfo? Zone(string? id)
    {
        if (string.IsNullOrEmpty(id) || id is "UTC" or "Etc/UTC")
        {
            return id is null or "" ? null : TimeZoneInfo.Utc;
        }
        return TimeZoneInfo.TryFindSystemTimeZoneById(id, out var zone) ? zone : null;
    }

    // A local midnight that a daylight-saving change skips starts the period at the first local time that exists.
    private static DateTimeOffset AtLocal(DateTime local, TimeZoneInfo zone)
    {
        while (zone.IsInvalidTime(local))
        {
            local = local.AddMinutes(15);
        }
        return new DateTimeOffset(local, zone.GetUtcOffset(local)).ToUniversalTime();
    }
}
