using System.Text.Json.Serialization;
using ClaudeProxy.Gateway.Forwarding;

namespace ClaudeProxy.Gateway.Management;

public sealed record DeviceView(string DeviceId, string? AppVersion, string UserId, string OrgId, string Status, List<string> Models, int RateLimit,
    int? TokenLimit, decimal? SpendCap, int PolicyVersion, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, decimal SpentThisPeriod,
    string? KeyAlgorithm = null, DateTimeOffset? KeyEnrolledAt = null, string? KeyFingerprint = null);

public sealed record PageOf<T>(List<T> Data, int Page, int PageSize, int Total);

public sealed record PolicyUpdate(List<string>? Models, int? RateLimit, int? TokenLimit, decimal? SpendCap);

public sealed record NewDevice(string DeviceId, string? UserId, List<string>? Models, int? RateLimit, int? TokenLimit, decimal? SpendCap);

public sealed record IssuedTokenView(string WrapperToken, DateTimeOffset ExpiresAt);

public sealed record AuditView(long Id, DateTimeOffset Time, string Actor, string Action, string Target, string? Before, string? After);

public sealed record SeriesPoint(DateTimeOffset Bucket, string Model, long Requests, long InputTokens, long OutputTokens, long CacheReadTokens, decimal CostUsd);

public sealed record UsageTotal(string Key, long Requests, long Errors, long InputTokens, long OutputTokens, long CacheWriteTokens, long CacheReadTokens, decimal CostUsd);

public sealed record SessionView(string SessionId, string DeviceId, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, long Requests, long InputTokens,
    long OutputTokens, decimal CostUsd);

public sealed record EventView(Guid Id, DateTimeOffset Time, string DeviceId, string? SessionId, string Model, string Endpoint, int Status, bool Streamed,
    long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal? CostUsd, double LatencyMs,
    double? TimeToFirstByteMs, bool Cancelled, string? UpstreamRequestId, string CorrelationId, bool CostEstimated = false, bool OutputEstimated = false);

public sealed record Overview(decimal SpendToday, decimal SpendThisMonth, long RequestsToday, long ErrorsToday, double ErrorRateToday,
    int PendingApprovals, int Devices, List<UsageTotal> TopDevices, List<SeriesPoint> SpendByDay, int DeadLetters);

[JsonSerializable(typeof(GatewayInstance))]
[JsonSerializable(typeof(BreakerStatus))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class ManagementJsonContext : JsonSerializerContext;
