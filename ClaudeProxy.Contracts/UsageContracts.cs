namespace ClaudeProxy.Contracts;

public sealed record SeriesPoint(DateTimeOffset Bucket, string Model, long Requests, long InputTokens, long OutputTokens, long CacheReadTokens, decimal CostUsd);

public sealed record UsageTotal(string Key, long Requests, long Errors, long InputTokens, long OutputTokens, long CacheWriteTokens, long CacheReadTokens, decimal CostUsd);

public sealed record SessionView(string SessionId, string DeviceId, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, long Requests, long InputTokens,
    long OutputTokens, decimal CostUsd);

public sealed record EventView(Guid Id, DateTimeOffset Time, string DeviceId, string? SessionId, string Model, string Endpoint, int Status, bool Streamed,
    long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal? CostUsd, double LatencyMs,
    double? TimeToFirstByteMs, bool Cancelled, string? UpstreamRequestId, string CorrelationId, bool CostEstimated = false, bool OutputEstimated = false, string? UserEmail = null);

public sealed record Overview(decimal SpendToday, decimal SpendThisMonth, long RequestsToday, long ErrorsToday, double ErrorRateToday,
    int PendingApprovals, int Devices, List<UsageTotal> TopDevices, List<SeriesPoint> SpendByDay, int DeadLetters);
