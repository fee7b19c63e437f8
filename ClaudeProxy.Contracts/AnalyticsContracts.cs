namespace ClaudeProxy.Contracts;

// The analytics of the management API (/manage/v1/analytics/...), read from the rollups. Money is USD; token counts are
// as the upstream reported them. "Key" is the id of what a row is about (a model id, user id, group id, device id,
// session id or agent id) and "Label" what people call it (an email, a group's name, a device's name) where one is known.

/// <summary>What prompt caching did for one key: reads saved the input price minus their own; writes cost the premium over input.</summary>
public sealed record CacheSavingsRow(string Key, string? Label, long Requests, long InputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens,
    long CacheReadTokens, decimal CostUsd, decimal SavedUsd, decimal WriteExtraUsd, decimal NetSavedUsd, double HitRatio);

/// <summary><c>GET /manage/v1/analytics/cache?by=model|user|group|device|session|agent&amp;from=&amp;to=&amp;session=</c>.</summary>
public sealed record CacheAnalytics(DateTimeOffset From, DateTimeOffset To, string By, CacheSavingsRow Total, List<CacheSavingsRow> Rows);

public sealed record SpendPoint(DateTimeOffset Bucket, string Key, long Requests, decimal CostUsd);

public sealed record SpendKeyTotal(string Key, string? Label, long Requests, decimal CostUsd);

/// <summary>This month so far, the rate of the days gone, and where that rate ends the month.</summary>
public sealed record SpendProjection(DateTimeOffset MonthStart, DateTimeOffset MonthEnd, decimal SpentThisMonth, decimal DailyRate, decimal ProjectedMonthEnd);

/// <summary><c>GET /manage/v1/analytics/spend?by=model|user|group|device&amp;period=day|week|month&amp;from=&amp;to=</c>.</summary>
public sealed record SpendAnalytics(DateTimeOffset From, DateTimeOffset To, string By, string Period, List<SpendPoint> Points, List<SpendKeyTotal> Totals,
    SpendProjection Projection);

/// <summary>One Claude Code session (<c>x-claude-code-session-id</c>).</summary>
public sealed record SessionSummary(string SessionId, string DeviceId, string? UserEmail, DateTimeOffset FirstSeen, DateTimeOffset LastSeen,
    double DurationSeconds, long Requests, int Subagents, decimal CostUsd, decimal SavedUsd);

/// <summary>The session itself (AgentId null) or one subagent (<c>x-claude-code-agent-id</c>), with the subagents it started.</summary>
public sealed record AgentNode(string? AgentId, string? ParentAgentId, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, long Requests, long InputTokens,
    long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal CostUsd, decimal SavedUsd, List<AgentNode> Children);

/// <summary><c>GET /manage/v1/analytics/sessions/{id}</c>: the session and its subagents as a tree.</summary>
public sealed record SessionTree(SessionSummary Session, AgentNode Root);

public sealed record ErrorRateRow(string Reason, long Count, double Rate);

public sealed record ErrorRatePoint(DateTimeOffset Bucket, string Reason, long Count);

/// <summary><c>GET /manage/v1/analytics/errors?from=&amp;to=</c>: errors and 429s by reason against every request in the range.</summary>
public sealed record ErrorAnalytics(DateTimeOffset From, DateTimeOffset To, long Requests, List<ErrorRateRow> Reasons, List<ErrorRatePoint> Series);

public sealed record LatencyRow(string Model, long Requests, double? TtftP50Ms, double? TtftP95Ms);

/// <summary><c>GET /manage/v1/analytics/latency?from=&amp;to=</c>: time to first token by model.</summary>
public sealed record LatencyAnalytics(DateTimeOffset From, DateTimeOffset To, List<LatencyRow> Models);
