using System.Globalization;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// The device API's usage endpoints, whose <c>/admin</c> paths stay for compatibility: <c>GET /admin/usage</c> (this
/// device's recent requests, paged, filtered by time and model) and <c>GET /admin/stats</c> (totals by model and day,
/// spend against cap). A device token opens them, and a device sees only its own data.
/// </summary>
public static class DeviceUsageApi
{
    public static IEndpointRouteBuilder MapDeviceUsageApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/admin/usage", Usage);
        app.MapGet("/admin/stats", Stats);
        return app;
    }

    private static async Task Usage(HttpContext context, DeviceAuthenticator auth, IServiceProvider services, InMemoryUsageLog memory)
    {
        if (await auth.AuthenticateAsync(context) is not { } identity || await Filter.ReadAsync(context) is not { } filter)
        {
            return;
        }
        var page = Math.Max(1, Int(context, "page") ?? 1);
        var pageSize = Math.Clamp(Int(context, "page_size") ?? 50, 1, 500);
        List<UsageItem> items;
        int total;
        if (services.GetService<IDbContextFactory<GatewayDbContext>>() is { } contexts)
        {
            await using var db = await contexts.CreateDbContextAsync(context.RequestAborted);
            var query = db.UsageEvents.AsNoTracking().Where(u => u.DeviceId == identity.DeviceId && u.Time >= filter.From && u.Time < filter.To);
            if (filter.Model is { } model)
            {
                query = query.Where(u => u.Model == model);
            }
            total = await query.CountAsync(context.RequestAborted);
            items = (await query.OrderByDescending(u => u.Time).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync(context.RequestAborted)).ConvertAll(ItemOf);
        }
        else
        {
            var query = memory.Snapshot().Where(u => u.DeviceId == identity.DeviceId && u.Time >= filter.From && u.Time < filter.To
                && (filter.Model is null || u.Model == filter.Model)).ToList();
            total = query.Count;
            items = [.. query.OrderByDescending(u => u.Time).Skip((page - 1) * pageSize).Take(pageSize).Select(ItemOf)];
        }
        await context.Response.WriteAsJsonAsync(new UsagePage(items, page, pageSize, total), UsageApiJsonContext.Default.UsagePage, cancellationToken: context.RequestAborted);
    }

    private static async Task Stats(HttpContext context, DeviceAuthenticator auth, IServiceProvider services, InMemoryUsageLog memory,
        LimitOptions limits, TimeProvider time)
    {
        if (await auth.AuthenticateAsync(context) is not { } identity || await Filter.ReadAsync(context) is not { } filter)
        {
            return;
        }
        var (periodStart, periodEnd, _) = SpendPeriods.Of(limits.SpendPeriod, time.GetUtcNow());
        List<Totals> byModel, byDay;
        decimal spent;
        if (services.GetService<IDbContextFactory<GatewayDbContext>>() is { } contexts)
        {
            await using var db = await contexts.CreateDbContextAsync(context.RequestAborted);
            var days = db.UsageRollups.AsNoTracking().Where(r => r.Granularity == "d" && r.DeviceId == identity.DeviceId
                && r.BucketStart >= filter.From.UtcDateTime.Date && r.BucketStart < filter.To);
            byModel = await days.GroupBy(r => r.Model).Select(g => new Totals(g.Key, g.Sum(r => r.Requests), g.Sum(r => r.InputTokens), g.Sum(r => r.OutputTokens),
                g.Sum(r => r.CacheWrite5mTokens), g.Sum(r => r.CacheWrite1hTokens), g.Sum(r => r.CacheReadTokens), g.Sum(r => r.CostUsd))).ToListAsync(context.RequestAborted);
            var dayRows = await days.GroupBy(r => r.BucketStart).Select(g => new { g.Key, Requests = g.Sum(r => r.Requests), Input = g.Sum(r => r.InputTokens),
                Output = g.Sum(r => r.OutputTokens), W5 = g.Sum(r => r.CacheWrite5mTokens), W1 = g.Sum(r => r.CacheWrite1hTokens), Read = g.Sum(r => r.CacheReadTokens),
                Cost = g.Sum(r => r.CostUsd) }).ToListAsync(context.RequestAborted);
            byDay = [.. dayRows.OrderBy(d => d.Key).Select(d => new Totals(d.Key.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), d.Requests, d.Input, d.Output, d.W5, d.W1, d.Read, d.Cost))];
            spent = await db.UsageEvents.Where(u => u.DeviceId == identity.DeviceId && u.Time >= periodStart).SumAsync(u => u.CostUsd ?? 0m, context.RequestAborted);
        }
        else
        {
            var events = memory.Snapshot().Where(u => u.DeviceId == identity.DeviceId).ToList();
            var inRange = events.Where(u => u.Time >= filter.From && u.Time < filter.To).ToList();
            byModel = [.. inRange.GroupBy(u => u.Model).Select(g => Sum(g.Key, g))];
            byDay = [.. inRange.GroupBy(u => u.Time.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)).OrderBy(g => g.Key).Select(g => Sum(g.Key, g))];
            spent = events.Where(u => u.Time >= periodStart).Sum(u => u.CostUsd ?? 0m);
        }
        await context.Response.WriteAsJsonAsync(new DeviceStats(identity.DeviceId, identity.SpendCap, limits.SpendPeriod.ToString().ToLowerInvariant(),
            periodStart, periodEnd, spent, identity.SpendCap is decimal cap ? Math.Max(0, cap - spent) : null, byModel, byDay),
            UsageApiJsonContext.Default.DeviceStats, cancellationToken: context.RequestAborted);
    }

    private static Totals Sum(string key, IEnumerable<UsageEvent> g)
    {
        var list = g.ToList();
        return new Totals(key, list.Count, list.Sum(u => u.InputTokens), list.Sum(u => u.OutputTokens), list.Sum(u => u.CacheWrite5mTokens),
            list.Sum(u => u.CacheWrite1hTokens), list.Sum(u => u.CacheReadTokens), list.Sum(u => u.CostUsd ?? 0m));
    }

    /// <summary>A request as its device sees it: the columns marked <see cref="UsageShown.Device"/>.</summary>
    internal static UsageItem ItemOf(UsageEvent u) => new(Id: u.Id, Time: u.Time, Model: u.Model, Endpoint: u.Endpoint, Status: u.Status, Streamed: u.Streamed,
        InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CacheWrite5mTokens: u.CacheWrite5mTokens, CacheWrite1hTokens: u.CacheWrite1hTokens,
        CacheReadTokens: u.CacheReadTokens, CostUsd: u.CostUsd, SessionId: u.SessionId, LatencyMs: u.LatencyMs, Cancelled: u.Cancelled);

    private static int? Int(HttpContext context, string name) =>
        int.TryParse(context.Request.Query[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;

    private sealed record Filter(DateTimeOffset From, DateTimeOffset To, string? Model)
    {
        public static async ValueTask<Filter?> ReadAsync(HttpContext context)
        {
            var query = context.Request.Query;
            DateTimeOffset from = DateTimeOffset.UnixEpoch, to = DateTimeOffset.MaxValue;
            if ((query["from"].ToString() is { Length: > 0 } f && !DateTimeOffset.TryParse(f, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out from)) ||
                (query["to"].ToString() is { Length: > 0 } t && !DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out to)))
            {
                await ApiErrors.WriteAsync(context, 400, "from and to must be ISO 8601 times, such as 2026-11-01T00:00:00Z");
                return null;
            }
            return new Filter(from.ToUniversalTime(), to.ToUniversalTime(), query["model"].ToString() is { Length: > 0 } m ? m : null);
        }
    }
}

public sealed record UsageItem(Guid Id, DateTimeOffset Time, string Model, string Endpoint, int Status, bool Streamed, long InputTokens, long OutputTokens,
    long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal? CostUsd, string? SessionId, double LatencyMs, bool Cancelled);

public sealed record UsagePage(List<UsageItem> Data, int Page, int PageSize, int Total);

public sealed record Totals(string Key, long Requests, long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens,
    long CacheReadTokens, decimal CostUsd);

public sealed record DeviceStats(string DeviceId, decimal? SpendCapUsd, string SpendPeriod, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd,
    decimal SpentThisPeriodUsd, decimal? RemainingUsd, List<Totals> ByModel, List<Totals> ByDay);

[System.Text.Json.Serialization.JsonSerializable(typeof(UsagePage))]
[System.Text.Json.Serialization.JsonSerializable(typeof(DeviceStats))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class UsageApiJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
