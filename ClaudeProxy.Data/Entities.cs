namespace ClaudeProxy.Gateway.Data;

/// <summary>A device as the gateway knows it: who it is, its standing and its policy.</summary>
public sealed class DeviceRecord
{
    public required string DeviceId { get; set; }
    public string? AppVersion { get; set; }
    public required string UserId { get; set; }
    public required string OrgId { get; set; }
    public required string Status { get; set; }
    public required List<string> Models { get; set; }
    public int RateLimit { get; set; }
    public int? TokenLimit { get; set; }
    public decimal? SpendCap { get; set; }
    public int PolicyVersion { get; set; }
    /// <summary>The device's enrolled public key (SubjectPublicKeyInfo, base64); null until it enrols one.</summary>
    public string? PublicKey { get; set; }
    /// <summary>"ed25519" or "p256" while a key is enrolled.</summary>
    public string? KeyAlgorithm { get; set; }
    public DateTimeOffset? KeyEnrolledAt { get; set; }
    public DateTimeOffset FirstSeen { get; set; }
    public DateTimeOffset LastSeen { get; set; }
}

/// <summary>A usage event Postgres refused (a data error, not an outage), kept with the reason instead of blocking the rest.</summary>
public sealed class UsageDeadLetter
{
    public long Id { get; set; }
    public DateTimeOffset Time { get; set; }
    public Guid? EventId { get; set; }
    /// <summary>Where it was refused: "writer" (a live batch) or "replay" (a spool file).</summary>
    public required string Source { get; set; }
    public required string Reason { get; set; }
    /// <summary>The event as JSON text (escaped, so even a NUL character in a field is kept).</summary>
    public required string Payload { get; set; }
}

/// <summary>
/// Usage summed per hour ('h') or day ('d'), device and model, kept up to date by the writer (see <c>UsageSql</c>):
/// the sums of the <see cref="Usage.UsageEvent"/> counters of the same names, with the requests, the errors (status 400
/// and above) and the requests without a price of their own.
/// </summary>
public sealed record UsageRollup(string Granularity, DateTimeOffset BucketStart, string DeviceId, string Model, long Requests, long Errors,
    long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal CostUsd, long UnpricedRequests);

/// <summary>Who changed what, before and after, and when.</summary>
public sealed class AuditEntry
{
    public long Id { get; set; }
    public DateTimeOffset Time { get; set; }
    public required string Actor { get; set; }
    public required string Action { get; set; }
    public required string Target { get; set; }
    public string? Before { get; set; }
    public string? After { get; set; }
}
