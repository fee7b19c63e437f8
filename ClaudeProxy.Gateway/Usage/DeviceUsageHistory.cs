using System.Globalization;
using ClaudeProxy.Gateway.Data;
using Microsoft.EntityFrameworkCore;
using Filter = ClaudeProxy.Gateway.Usage.DeviceUsageApi.Filter;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// What the device API reads of a device's own usage: from Postgres when it is configured, else from the events kept in
/// memory. Chosen once, in <see cref="UsageExtensions.AddUsage"/>.
/// </summary>
internal interface IDeviceUsageHistory
{
    /// <summary>The device's requests in the filter, newest first, one page of them, and how many there are.</summary>
    Task<(List<UsageEvent> Events, int Total)> PageAsync(string deviceId, Filter filter, int page, int pageSize, CancellationToken cancellationToken);

    /// <summary>Totals by model and by day in the filter, and what the device spent since <paramref name="periodStart"/>.</summary>
    Task<(List<Totals> ByModel, List<Totals> ByDay, decimal Spent)> StatsAsync(string deviceId, Filter filter, DateTimeOffset periodStart,
        CancellationToken cancellationToken);
}

/// <summary>Requests from <c>usage_events</c>; totals from the daily rollups.</summary>
internal sealed class PostgresDeviceUsageHistory(IDbContextFactory<GatewayDbContext> contexts) : IDeviceUsageHistory
{
    public async Task<(List<UsageEvent> Events, int Total)> PageAsync(string deviceId, Filter filter, int page, int pageSize, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var query = db.UsageEvents.AsNoTracking().Where(u => u.DeviceId == deviceId && u.Time >= filter.From && u.Time < filter.To);
        if (filter.Model is { } model)
        {
            query = query.Where(u => u.Model == model);
        }
        var total = await query.CountAsync(cancellationToken);
        return (await query.OrderByDescending(u => u.Time).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync(cancellationToken), total);
    }

    public async Task<(List<Totals> ByModel, List<Totals> ByDay, decimal Spent)> StatsAsync(string deviceId, Filter filter, DateTimeOffset periodStart,
        CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var days = db.UsageRollups.AsNoTracking().Where(r => r.Granularity == "d" && r.DeviceId == deviceId
            && r.BucketStart >= filter.From.UtcDateTime.Date && r.BucketStart < filter.To);
        var byModel = await days.GroupBy(r => r.Model).Select(g => new Totals(g.Key, g.Sum(r => r.Requests), g.Sum(r => r.InputTokens), g.Sum(r => r.OutputTokens),
            g.Sum(r => r.CacheWrite5mTokens), g.Sum(r => r.CacheWrite1hTokens), g.Sum(r => r.CacheReadTokens), g.Sum(r => r.CostUsd))).ToListAsync(cancellationToken);
        var dayRows = await days.GroupBy(r => r.BucketStart).Select(g => new { g.Key, Requests = g.Sum(r => r.Requests), Input = g.Sum(r => r.InputTokens),
            Output = g.Sum(r => r.OutputTokens), W5 = g.Sum(r => r.CacheWrite5mTokens), W1 = g.Sum(r => r.CacheWrite1hTokens), Read = g.Sum(r => r.CacheReadTokens),
            Cost = g.Sum(r => r.CostUsd) }).ToListAsync(cancellationToken);
        List<Totals> byDay = [.. dayRows.OrderBy(d => d.Key).Select(d => new Totals(d.Key.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            d.Requests, d.Input, d.Output, d.W5, d.W1, d.Read, d.Cost))];
        var spent = await db.UsageEvents.Where(u => u.DeviceId == deviceId && u.Time >= periodStart).SumAsync(u => u.CostUsd ?? 0m, cancellationToken);
        return (byModel, byDay, spent);
    }
}

/// <summary>The same answers from the latest events kept in memory (no Postgres configured).</summary>
internal sealed class InMemoryDeviceUsageHistory(InMemoryUsageLog memory) : IDeviceUsageHistory
{
    public Task<(List<UsageEvent> Events, int Total)> PageAsync(string deviceId, Filter filter, int page, int pageSize, CancellationToken cancellationToken)
    {
        var query = memory.Snapshot().Where(u => u.DeviceId == deviceId && u.Time >= filter.From && u.Time < filter.To
            && (filter.Model is null || u.Model == filter.Model)).ToList();
        return Task.FromResult<(List<UsageEvent>, int)>(([.. query.OrderByDescending(u => u.Time).Skip((page - 1) * pageSize).Take(pageSize)], query.Count));
    }

    public Task<(List<Totals> ByModel, List<Totals> ByDay, decimal Spent)> StatsAsync(string deviceId, Filter filter, DateTimeOffset periodStart,
        CancellationToken cancellationToken)
    {
        var events = memory.Snapshot().Where(u => u.DeviceId == deviceId).ToList();
        var inRange = events.Where(u => u.Time >= filter.From && u.Time < filter.To).ToList();
        List<Totals> byModel = [.. inRange.GroupBy(u => u.Model).Select(g => Sum(g.Key, g))];
        List<Totals> byDay = [.. inRange.GroupBy(u => u.Time.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)).OrderBy(g => g.Key).Select(g => Sum(g.Key, g))];
        return Task.FromResult((byModel, byDay, events.Where(u => u.Time >= periodStart).Sum(u => u.CostUsd ?? 0m)));
    }

    private static Totals Sum(string key, IEnumerable<UsageEvent> g)
    {
        var list = g.ToList();
        return new Totals(key, list.Count, list.Sum(u => u.InputTokens), list.Sum(u => u.OutputTokens), list.Sum(u => u.CacheWrite5mTokens),
            list.Sum(u => u.CacheWrite1hTokens), list.Sum(u => u.CacheReadTokens), list.Sum(u => u.CostUsd ?? 0m));
    }
}
