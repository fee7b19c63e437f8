using ClaudeProxy.Contracts;

namespace ClaudeProxy.Admin.Gateway;

/// <summary>The analytics of the management API: spend with its projection, prompt cache savings, sessions, errors and latency.</summary>
public sealed partial class ManagementClient
{
    /// <summary>
    /// Spend per <paramref name="period"/> (day, week, month) by <paramref name="by"/> (model, user, group, device): the
    /// totals of every key, the points of the <paramref name="limit"/> costliest.
    /// </summary>
    public Task<SpendAnalytics> SpendAnalyticsAsync(string by, string period, DateTimeOffset from, DateTimeOffset to, int limit = 20, CancellationToken ct = default) =>
        GetAsync<SpendAnalytics>($"/manage/v1/analytics/spend?by={Uri.EscapeDataString(by)}&period={Uri.EscapeDataString(period)}&limit={limit}&{Range(from, to)}", ct);

    /// <summary>
    /// What prompt caching saved and cost by <paramref name="by"/> (model, user, group, device, session, agent); with
    /// <paramref name="session"/> (by session or agent only), within that session.
    /// </summary>
    public Task<CacheAnalytics> CacheAnalyticsAsync(string by, DateTimeOffset from, DateTimeOffset to, string? session = null, CancellationToken ct = default) =>
        GetAsync<CacheAnalytics>($"/manage/v1/analytics/cache?by={Uri.EscapeDataString(by)}&{Range(from, to)}" +
            (string.IsNullOrWhiteSpace(session) ? "" : "&session=" + Uri.EscapeDataString(session.Trim())), ct);

    /// <summary>The costliest Claude Code sessions active in the last <paramref name="days"/> days, costliest first.</summary>
    public Task<List<SessionSummary>> TopSessionsAsync(int days, int limit, CancellationToken ct = default) =>
        GetAsync<List<SessionSummary>>($"/manage/v1/analytics/sessions/top?days={days}&limit={limit}", ct);

    /// <summary>One session with its subagents as a tree.</summary>
    public Task<SessionTree> SessionTreeAsync(string id, CancellationToken ct = default) =>
        GetAsync<SessionTree>($"/manage/v1/analytics/sessions?id={Uri.EscapeDataString(id)}", ct);

    public Task<ErrorAnalytics> ErrorAnalyticsAsync(DateTimeOffset from, DateTimeOffset to, CancellationToken ct = default) =>
        GetAsync<ErrorAnalytics>($"/manage/v1/analytics/errors?{Range(from, to)}", ct);

    public Task<LatencyAnalytics> LatencyAnalyticsAsync(DateTimeOffset from, DateTimeOffset to, CancellationToken ct = default) =>
        GetAsync<LatencyAnalytics>($"/manage/v1/analytics/latency?{Range(from, to)}", ct);

    private static string Range(DateTimeOffset from, DateTimeOffset to) =>
        $"from={Uri.EscapeDataString(from.UtcDateTime.ToString("o"))}&to={Uri.EscapeDataString(to.UtcDateTime.ToString("o"))}";
}
