using System.Text;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Usage;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Management;

/// <summary>Usage for operators: time series by hour and day, by model, by device, top spenders, sessions, events, CSV, overview.</summary>
public static class UsageManagementApi
{
    public static RouteGroupBuilder MapUsageManagementApi(this RouteGroupBuilder api)
    {
        var usage = api.MapGroup("/usage").WithTags("Usage");
        usage.MapGet("/timeseries", TimeSeries).WithSummary("Requests, tokens and cost per hour or day and model, from the rollups");
        usage.MapGet("/by-model", (ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device) => Totals(m, from, to, device, null, r => r.Model))
            .WithSummary("Totals by model");
        usage.MapGet("/by-device", (ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? model) => Totals(m, from, to, null, model, r => r.DeviceId))
            .WithSummary("Totals by device");
        usage.MapGet("/top-spenders", TopSpenders).WithSummary("Devices by cost, highest first");
        usage.MapGet("/sessions", Sessions).WithSummary("Claude Code sessions (x-claude-code-session-id), latest first");
        usage.MapGet("/events", Events).WithSummary("Individual requests, filtered and paged, newest first");
        usage.MapGet("/export.csv", ExportCsv).WithSummary("The filtered requests as CSV");
        api.MapGet("/overview", OverviewAsync).WithTags("Usage").WithSummary("Spend today and this month, requests, error rate, top devices, pending approvals, usage dead letters");
        return api;
    }

    private static (DateTimeOffset From, DateTimeOffset To) Range(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to)
    {
        var end = (to ?? m.Time.GetUtcNow().AddDays(1)).ToUniversalTime();
        return ((from ?? end.AddDays(-31)).ToUniversalTime(), end);
    }

    private static async Task<Ok<List<SeriesPoint>>> TimeSeries(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device, string? model,
        string granularity = "day")
    {
        var (start, end) = Range(m, from, to);
        var g = granularity.StartsWith('h') ? "h" : "d";
        await using var db = await m.Contexts.CreateDbContextAsync();
        var query = db.UsageRollups.AsNoTracking().Where(r => r.Granularity == g && r.BucketStart >= TruncateForRollup(start, g) && r.BucketStart < end);
        if (device is not null)
        {
            query = query.Where(r => r.DeviceId == device);
        }
        if (model is not null)
        {
            query = query.Where(r => r.Model == model);
        }
        var rows = await query.GroupBy(r => new { r.BucketStart, r.Model })
            .Select(x => new SeriesPoint(x.Key.BucketStart, x.Key.Model, x.Sum(r => r.Requests), x.Sum(r => r.InputTokens + r.CacheWrite5mTokens + r.CacheWrite1hTokens),
                x.Sum(r => r.OutputTokens), x.Sum(r => r.CacheReadTokens), x.Sum(r => r.CostUsd)))
            .ToListAsync();
        return TypedResults.Ok(rows.OrderBy(p => p.Bucket).ThenBy(p => p.Model).ToList());
    }

    private static DateTimeOffset TruncateForRollup(DateTimeOffset at, string granularity) => granularity == "h"
        ? new DateTimeOffset(at.Year, at.Month, at.Day, at.Hour, 0, 0, TimeSpan.Zero)
        : new DateTimeOffset(at.UtcDateTime.Date, TimeSpan.Zero);

    private static async Task<Ok<List<UsageTotal>>> Totals(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device, string? model,
        System.Linq.Expressions.Expression<Func<UsageRollup, string>> key)
    {
        var (start, end) = Range(m, from, to);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var query = db.UsageRollups.AsNoTracking().Where(r => r.Granularity == "h" && r.BucketStart >= TruncateForRollup(start, "h") && r.BucketStart < end);
        if (device is not null)
        {
            query = query.Where(r => r.DeviceId == device);
        }
        if (model is not null)
        {
            query = query.Where(r => r.Model == model);
        }
        var rows = await query.GroupBy(key).Select(x => new UsageTotal(x.Key, x.Sum(r => r.Requests), x.Sum(r => r.Errors), x.Sum(r => r.InputTokens),
            x.Sum(r => r.OutputTokens), x.Sum(r => r.CacheWrite5mTokens + r.CacheWrite1hTokens), x.Sum(r => r.CacheReadTokens), x.Sum(r => r.CostUsd))).ToListAsync();
        return TypedResults.Ok(rows.OrderByDescending(r => r.CostUsd).ThenBy(r => r.Key).ToList());
    }

    private static async Task<Ok<List<UsageTotal>>> TopSpenders(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, int limit = 10)
    {
        var all = (await Totals(m, from, to, null, null, r => r.DeviceId)).Value!;
        return TypedResults.Ok(all.Take(Math.Clamp(limit, 1, 100)).ToList());
    }

    private static async Task<Ok<PageOf<SessionView>>> Sessions(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device, int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 50)
    {
        var (start, end) = Range(m, from, to);
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var query = db.UsageEvents.AsNoTracking().Where(u => u.SessionId != null && u.Time >= start && u.Time < end);
        if (device is not null)
        {
            query = query.Where(u => u.DeviceId == device);
        }
        var grouped = query.GroupBy(u => new { u.SessionId, u.DeviceId }).Select(g => new
        {
            g.Key.SessionId, g.Key.DeviceId, First = g.Min(u => u.Time), Last = g.Max(u => u.Time), Requests = g.LongCount(),
            Input = g.Sum(u => u.InputTokens + u.CacheWrite5mTokens + u.CacheWrite1hTokens + u.CacheReadTokens), Output = g.Sum(u => u.OutputTokens),
            Cost = g.Sum(u => u.CostUsd ?? 0m),
        });
        var total = await grouped.CountAsync();
        var rows = await grouped.OrderByDescending(s => s.Last).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync();
        return TypedResults.Ok(new PageOf<SessionView>([.. rows.Select(s => new SessionView(s.SessionId!, s.DeviceId, s.First, s.Last, s.Requests, s.Input, s.Output, s.Cost))],
            page, pageSize, total));
    }

    private static IQueryable<UsageEvent> Filtered(GatewayDbContext db, DateTimeOffset start, DateTimeOffset end, string? device, string? model, string? session)
    {
        var query = db.UsageEvents.AsNoTracking().Where(u => u.Time >= start && u.Time < end);
        if (device is not null)
        {
            query = query.Where(u => u.DeviceId == device);
        }
        if (model is not null)
        {
            query = query.Where(u => u.Model == model);
        }
        if (session is not null)
        {
            query = query.Where(u => u.SessionId == session);
        }
        return query;
    }

    private static async Task<Ok<PageOf<EventView>>> Events(ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device, string? model,
        string? session, int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 50)
    {
        var (start, end) = Range(m, from, to);
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 500);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var query = Filtered(db, start, end, device, model, session);
        var total = await query.CountAsync();
        var rows = await query.OrderByDescending(u => u.Time).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync();
        return TypedResults.Ok(new PageOf<EventView>(rows.ConvertAll(EventOf), page, pageSize, total));
    }

    private static async Task ExportCsv(HttpContext context, ManagementContext m, DateTimeOffset? from, DateTimeOffset? to, string? device, string? model, string? session)
    {
        var (start, end) = Range(m, from, to);
        context.Response.ContentType = "text/csv; charset=utf-8";
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"usage-{start:yyyyMMdd}-{end:yyyyMMdd}.csv\"";
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        await using var writer = new StreamWriter(context.Response.Body, new UTF8Encoding(false), 64 * 1024);
        await writer.WriteLineAsync(UsageColumns.CsvHeader);
        await foreach (var u in Filtered(db, start, end, device, model, session).OrderBy(u => u.Time).AsAsyncEnumerable().WithCancellation(context.RequestAborted))
        {
            await writer.WriteLineAsync(UsageColumns.CsvLine(u));
        }
    }

    /// <summary>An event as the operators' listing shows it: the columns marked <see cref="UsageShown.Events"/>.</summary>
    internal static EventView EventOf(UsageEvent u) => new(Id: u.Id, Time: u.Time, DeviceId: u.DeviceId, SessionId: u.SessionId, Model: u.Model,
        Endpoint: u.Endpoint, Status: u.Status, Streamed: u.Streamed, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
        CacheWrite5mTokens: u.CacheWrite5mTokens, CacheWrite1hTokens: u.CacheWrite1hTokens, CacheReadTokens: u.CacheReadTokens, CostUsd: u.CostUsd,
        LatencyMs: u.LatencyMs, TimeToFirstByteMs: u.TimeToFirstByteMs, Cancelled: u.Cancelled, UpstreamRequestId: u.UpstreamRequestId,
        CorrelationId: u.CorrelationId, CostEstimated: u.CostEstimated, OutputEstimated: u.OutputEstimated, UserEmail: u.UserEmail);

    private static async Task<Ok<Overview>> OverviewAsync(ManagementContext m)
    {
        var now = m.Time.GetUtcNow();
        var today = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var month = new DateTimeOffset(today.Year, today.Month, 1, 0, 0, 0, TimeSpan.Zero);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var days = db.UsageRollups.AsNoTracking().Where(r => r.Granularity == "d");
        var todayRows = days.Where(r => r.BucketStart == today);
        var spendToday = await todayRows.SumAsync(r => (decimal?)r.CostUsd) ?? 0m;
        var requestsToday = await todayRows.SumAsync(r => (long?)r.Requests) ?? 0;
        var errorsToday = await todayRows.SumAsync(r => (long?)r.Errors) ?? 0;
        var spendMonth = await days.Where(r => r.BucketStart >= month).SumAsync(r => (decimal?)r.CostUsd) ?? 0m;
        var pending = await db.Devices.CountAsync(d => d.Status == DeviceStatus.Pending);
        var devices = await db.Devices.CountAsync();
        var deadLetters = await db.UsageDeadLetters.CountAsync();
        var top = (await Totals(m, month, null, null, null, r => r.DeviceId)).Value!.Take(5).ToList();
        var series = (await TimeSeries(m, today.AddDays(-29), null, null, null)).Value!;
        return TypedResults.Ok(new Overview(spendToday, spendMonth, requestsToday, errorsToday, requestsToday == 0 ? 0 : (double)errorsToday / requestsToday,
            pending, devices, top, series, deadLetters));
    }
}
