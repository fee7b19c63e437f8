using System.Globalization;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Errors;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Analytics for operators, read from the rollups only (never from <c>usage_events</c>): what prompt caching saved, spend
/// over time with the month-end projection, the costliest Claude Code sessions and their subagents, error and refusal
/// rates, and time to first token. Every query parameter is checked here: a value that cannot be read gets a 400 in
/// Anthropic's shape, never a default in its place.
/// </summary>
public static class AnalyticsApi
{
    /// <summary>The longest range a page reads.</summary>
    public const int MaxRangeDays = 400;
    /// <summary>The days a range covers when <c>from</c> is not given.</summary>
    public const int DefaultRangeDays = 30;
    /// <summary>As long as the session and agent ids the gateway records (longer headers are not recorded).</summary>
    public const int MaxIdLength = 256;
    public const int MaxLimit = 1000;
    /// <summary>The range of the cache page by session: a week, by default and at most.</summary>
    public const int SessionRangeDays = 7;
    /// <summary>The most days the top sessions look back.</summary>
    public const int MaxTopSessionDays = 14;

    private static readonly string[] CacheDimensions = ["model", "user", "group", "device", "session", "agent"];
    private static readonly string[] SpendDimensions = ["model", "user", "group", "device"];
    private static readonly string[] Periods = ["day", "week", "month"];

    public static RouteGroupBuilder MapAnalyticsApi(this RouteGroupBuilder api)
    {
        var analytics = api.MapGroup("/analytics").WithTags("Analytics");
        analytics.MapGet("/cache", CacheAsync).Produces<CacheAnalytics>()
            .WithSummary("What prompt caching saved and what its writes cost, by model, user, group, device, session or agent (query: by, from, to, session, limit)");
        analytics.MapGet("/spend", SpendAsync).Produces<SpendAnalytics>()
            .WithSummary("Spend per day, week or month by model, user, group or device, totals, and the month-end projection (query: by, period, from, to, limit)");
        analytics.MapGet("/sessions/top", TopSessionsAsync).Produces<List<SessionSummary>>()
            .WithSummary("The costliest Claude Code sessions active in the last days (query: days, limit)");
        analytics.MapGet("/sessions/{id}", SessionAsync).Produces<SessionTree>()
            .WithSummary("One Claude Code session with its subagents as a tree");
        // A session id is the client's text and may hold a '/', which a path segment cannot carry: the query can.
        analytics.MapGet("/sessions", SessionByQueryAsync).Produces<SessionTree>()
            .WithSummary("One Claude Code session with its subagents as a tree (query: id)");
        analytics.MapGet("/errors", ErrorsAsync).Produces<ErrorAnalytics>()
            .WithSummary("Upstream errors and the gateway's refusals by reason, against every request in the range (query: from, to)");
        analytics.MapGet("/latency", LatencyAsync).Produces<LatencyAnalytics>()
            .WithSummary("Time to first token p50 and p95 by model (query: from, to)");
        return api;
    }

    private static async Task CacheAsync(HttpContext context, AnalyticsQueries queries)
    {
        var q = new QueryReader(context.Request.Query);
        var by = q.OneOf("by", CacheDimensions, "model");
        var session = q.Id("session");
        // Sessions are many (some 10,000 a week for 500 devices): across sessions a page covers a week. One session's agents can be read over any range.
        var acrossSessions = by is "session" or "agent" && session is null;
        var (from, to) = q.Range(queries.Time, TimeSpan.FromDays(1), acrossSessions ? SessionRangeDays : DefaultRangeDays,
            acrossSessions ? SessionRangeDays : MaxRangeDays);
        var limit = q.Int("limit", 1, MaxLimit, 100);
        if (q.Error is null && session is not null && by is not ("session" or "agent"))
        {
            q.Fail("session applies to by=session and by=agent only");
        }
        // Every subagent of every session is a list no one reads, and the dearest query of all: agents are a session's.
        if (q.Error is null && session is null && by == "agent")
        {
            q.Fail("by=agent lists the agents of one session: add session=<x-claude-code-session-id>");
        }
        if (await q.RefuseAsync(context))
        {
            return;
        }
        var answer = await queries.CacheAsync(by!, from, to, session, limit, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(answer, context.RequestAborted);
    }

    private static async Task SpendAsync(HttpContext context, AnalyticsQueries queries)
    {
        var q = new QueryReader(context.Request.Query);
        var by = q.OneOf("by", SpendDimensions, "model");
        var period = q.OneOf("period", Periods, "day");
        var (from, to) = q.Range(queries.Time, TimeSpan.FromDays(1), DefaultRangeDays, MaxRangeDays);
        var limit = q.Int("limit", 1, MaxLimit, 20);
        if (await q.RefuseAsync(context))
        {
            return;
        }
        var answer = await queries.SpendAsync(by!, period!, from, to, limit, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(answer, context.RequestAborted);
    }

    private static async Task TopSessionsAsync(HttpContext context, AnalyticsQueries queries)
    {
        var q = new QueryReader(context.Request.Query);
        var days = q.Int("days", 1, MaxTopSessionDays, 7);
        var limit = q.Int("limit", 1, MaxLimit, 10);
        if (await q.RefuseAsync(context))
        {
            return;
        }
        var answer = await queries.TopSessionsAsync(days, limit, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(answer, context.RequestAborted);
    }

    private static async Task SessionByQueryAsync(HttpContext context, AnalyticsQueries queries)
    {
        if (context.Request.Query["id"] is not [{ } id])
        {
            await ApiErrors.WriteAsync(context, 400, "give the session as one id query parameter: /manage/v1/analytics/sessions?id=...");
            return;
        }
        await SessionAsync(id, context, queries);
    }

    private static async Task SessionAsync(string id, HttpContext context, AnalyticsQueries queries)
    {
        if (id.Length is 0 or > MaxIdLength)
        {
            await ApiErrors.WriteAsync(context, 400, $"a session id is 1 to {MaxIdLength} characters");
            return;
        }
        var tree = await queries.SessionAsync(id, context.RequestAborted);
        if (tree is null)
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", "no session with this id");
            return;
        }
        await context.Response.WriteAsJsonAsync(tree, context.RequestAborted);
    }

    private static async Task ErrorsAsync(HttpContext context, AnalyticsQueries queries)
    {
        var q = new QueryReader(context.Request.Query);
        var (from, to) = q.Range(queries.Time, TimeSpan.FromHours(1), DefaultRangeDays, MaxRangeDays);
        if (await q.RefuseAsync(context))
        {
            return;
        }
        var answer = await queries.ErrorsAsync(from, to, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(answer, context.RequestAborted);
    }

    private static async Task LatencyAsync(HttpContext context, AnalyticsQueries queries)
    {
        var q = new QueryReader(context.Request.Query);
        var (from, to) = q.Range(queries.Time, TimeSpan.FromDays(1), DefaultRangeDays, MaxRangeDays);
        if (await q.RefuseAsync(context))
        {
            return;
        }
        var answer = await queries.LatencyAsync(from, to, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(answer, context.RequestAborted);
    }

    /// <summary>Reads query parameters strictly, keeping the first problem found.</summary>
    private sealed class QueryReader(IQueryCollection query)
    {
        // Dates outside these years are refused rather than risk overflowing when a range is rounded out to whole units.
        private static readonly DateTimeOffset Earliest = new(1970, 1, 1, 0, 0, 0, TimeSpan.Zero);
        private static readonly DateTimeOffset Latest = new(9000, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public string? Error { get; private set; }

        public void Fail(string message) => Error ??= message;

        private string? Single(string name)
        {
            if (!query.TryGetValue(name, out var values))
            {
                return null;
            }
            if (values.Count != 1)
            {
                Fail($"{name} is given more than once");
                return null;
            }
            return values[0];
        }

        public string? OneOf(string name, string[] allowed, string fallback)
        {
            var value = Single(name);
            if (value is null)
            {
                return fallback;
            }
            if (Array.IndexOf(allowed, value) < 0)
            {
                Fail($"{name} must be one of {string.Join(", ", allowed)}");
                return null;
            }
            return value;
        }

        public int Int(string name, int min, int max, int fallback)
        {
            var value = Single(name);
            if (value is null)
            {
                return fallback;
            }
            if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
            {
                Fail($"{name} must be a whole number from {min} to {max}");
                return fallback;
            }
            return n;
        }

        public string? Id(string name)
        {
            var value = Single(name);
            if (value is not null && value.Length is 0 or > MaxIdLength)
            {
                Fail($"{name} must be 1 to {MaxIdLength} characters");
                return null;
            }
            return value;
        }

        private DateTimeOffset? Time(string name)
        {
            var value = Single(name);
            if (value is null)
            {
                return null;
            }
            if (!DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var at)
                || at < Earliest || at > Latest)
            {
                Fail($"{name} must be an ISO 8601 date or time (such as 2026-11-01 or 2026-11-01T00:00:00Z) between 1970 and 9000");
                return null;
            }
            return at.ToUniversalTime();
        }

        /// <summary>
        /// The range asked for, rounded out to whole units of <paramref name="unit"/> (an hour or a UTC day): <c>from</c>
        /// rounded down, <c>to</c> (exclusive) rounded up. Without <c>to</c>, it ends now; without <c>from</c>, it starts
        /// <paramref name="defaultDays"/> days before its end. It may ask for at most <paramref name="maxDays"/> days (so read one more
        /// at most, once rounded out).
        /// </summary>
        public (DateTimeOffset From, DateTimeOffset To) Range(TimeProvider time, TimeSpan unit, int defaultDays, int maxDays)
        {
            var to = Time("to") ?? time.GetUtcNow();
            var from = Time("from") ?? to.AddDays(-defaultDays);
            if (Error is not null)
            {
                return default;
            }
            var start = Floor(from, unit);
            var end = Floor(to, unit);
            if (end < to)
            {
                end += unit;
            }
            if (from >= to)
            {
                Fail("from must be before to");
            }
            else if (to - from > TimeSpan.FromDays(maxDays))
            {
                Fail($"this range covers at most {maxDays} days");
            }
            return (start, end);
        }

        private static DateTimeOffset Floor(DateTimeOffset at, TimeSpan unit) => new(at.UtcTicks - at.UtcTicks % unit.Ticks, TimeSpan.Zero);

        public async Task<bool> RefuseAsync(HttpContext context)
        {
            if (Error is null)
            {
                return false;
            }
            await ApiErrors.WriteAsync(context, 400, Error);
            return true;
        }
    }
}
