namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>Time buckets of a day, a week (from Monday) or a month, in UTC.</summary>
public static class Buckets
{
    /// <summary>At most this many buckets are drawn, so a hostile range cannot make the page build millions.</summary>
    public const int Most = 400;

    public static DateTimeOffset Start(DateTimeOffset at, string period)
    {
        var day = at.UtcDateTime.Date;
        return new DateTimeOffset(period switch
        {
            "month" => new DateTime(day.Year, day.Month, 1, 0, 0, 0, DateTimeKind.Utc),
            "week" => day.AddDays(-(((int)day.DayOfWeek + 6) % 7)),
            _ => day,
        }, TimeSpan.Zero);
    }

    public static DateTimeOffset Previous(DateTimeOffset bucket, string period) => period switch
    {
        "month" => bucket.AddMonths(-1),
        "week" => bucket.AddDays(-7),
        _ => bucket.AddDays(-1),
    };

    /// <summary>Every bucket from the first to the last (of the data, or <paramref name="from"/> and <paramref name="to"/> when given), gaps included.</summary>
    public static IReadOnlyList<DateTimeOffset> Continuous(IEnumerable<DateTimeOffset> buckets, string period, DateTimeOffset? from = null, DateTimeOffset? to = null)
    {
        var seen = buckets.Select(b => Start(b, period)).ToList();
        if (from is { } f) seen.Add(Start(f, period));
        if (to is { } t) seen.Add(Start(t, period));
        if (seen.Count == 0)
        {
            return [];
        }
        // Counted back from the last bucket, so a range too long to draw keeps its latest part.
        var first = seen.Min();
        var bucket = seen.Max();
        var all = new List<DateTimeOffset>();
        while (bucket >= first && all.Count < Most)
        {
            all.Add(bucket);
            bucket = Previous(bucket, period);
        }
        all.Reverse();
        return all;
    }

    public static string Format(string period) => period switch
    {
        "month" => "yyyy-MM",
        _ => "yyyy-MM-dd",
    };

    public static string Heading(string period) => period switch
    {
        "month" => "Month",
        "week" => "Week from",
        _ => "Day",
    };
}
