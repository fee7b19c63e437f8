using System.Globalization;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;

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

    private static async Task Usage(HttpContext context, DeviceAuthenticator auth, IDeviceUsageHistory history)
    {
        if (await auth.AuthenticateAsync(context) is not { } identity || await Filter.ReadAsync(context) is not { } filter)
        {
            return;
        }
        var page = Math.Max(1, Int(context, "page") ?? 1);
        var pageSize = Math.Clamp(Int(context, "page_size") ?? 50, 1, 500);
        var (events, total) = await history.PageAsync(identity.DeviceId, filter, page, pageSize, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(new UsagePage(events.ConvertAll(ItemOf), page, pageSize, total), UsageApiJsonContext.Default.UsagePage,
            cancellationToken: context.RequestAborted);
    }

    private static async Task Stats(HttpContext context, DeviceAuthenticator auth, IDeviceUsageHistory history, LimitOptions limits, TimeProvider time)
    {
        if (await auth.AuthenticateAsync(context) is not { } identity || await Filter.ReadAsync(context) is not { } filter)
        {
            return;
        }
        var (periodStart, periodEnd, _) = SpendPeriods.Of(limits.SpendPeriod, time.GetUtcNow());
        var (byModel, byDay, spent) = await history.StatsAsync(identity.DeviceId, filter, periodStart, context.RequestAborted);
        await context.Response.WriteAsJsonAsync(new DeviceStats(identity.DeviceId, identity.SpendCap, limits.SpendPeriod.ToString().ToLowerInvariant(),
            periodStart, periodEnd, spent, identity.SpendCap is decimal cap ? Math.Max(0, cap - spent) : null, byModel, byDay),
            UsageApiJsonContext.Default.DeviceStats, cancellationToken: context.RequestAborted);
    }

    /// <summary>A request as its device sees it: the columns marked <see cref="UsageShown.Device"/>.</summary>
    internal static UsageItem ItemOf(UsageEvent u) => new(Id: u.Id, Time: u.Time, Model: u.Model, Endpoint: u.Endpoint, Status: u.Status, Streamed: u.Streamed,
        InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CacheWrite5mTokens: u.CacheWrite5mTokens, CacheWrite1hTokens: u.CacheWrite1hTokens,
        CacheReadTokens: u.CacheReadTokens, CostUsd: u.CostUsd, SessionId: u.SessionId, LatencyMs: u.LatencyMs, Cancelled: u.Cancelled);

    private static int? Int(HttpContext context, string name) =>
        int.TryParse(context.Request.Query[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;

    internal sealed record Filter(DateTimeOffset From, DateTimeOffset To, string? Model)
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
