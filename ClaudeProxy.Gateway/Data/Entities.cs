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

/// <summary>One request's usage, as stored.</summary>
public sealed class UsageRow
{
    public Guid Id { get; set; }
    public DateTimeOffset Time { get; set; }
    public required string DeviceId { get; set; }
    public required string UserId { get; set; }
    public required string OrgId { get; set; }
    public string? SessionId { get; set; }
    public string? AgentId { get; set; }
    public required string Model { get; set; }
    public required string Endpoint { get; set; }
    public int Status { get; set; }
    public bool Streamed { get; set; }
    public long InputTokens { get; set; }
    public long OutputTokens { get; set; }
    public long CacheWrite5mTokens { get; set; }
    public long CacheWrite1hTokens { get; set; }
    public long CacheReadTokens { get; set; }
    public long WebSearchRequests { get; set; }
    public long WebFetchRequests { get; set; }
    public decimal? CostUsd { get; set; }
    public double LatencyMs { get; set; }
    public double? TimeToFirstByteMs { get; set; }
    public string? UpstreamRequestId { get; set; }
    public required string CorrelationId { get; set; }
    public bool Cancelled { get; set; }
    public bool StreamError { get; set; }
    /// <summary>The cost is an estimate: the model has no price, so it was priced at the price book's highest prices.</summary>
    public bool CostEstimated { get; set; }
    /// <summary>The output count is an estimate from the streamed content: the answer ended before its final usage.</summary>
    public bool OutputEstimated { get; set; }
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

/// <summary>Usage summed per hour ('h') or day ('d'), device and model, kept up to date by the writer.</summary>
public sealed class UsageRollup
{
    public required string Granularity { get; set; }
    public DateTimeOffset BucketStart { get; set; }
    public required string DeviceId { get; set; }
    public required string Model { get; set; }
    public long Requests { get; set; }
    public long Errors { get; set; }
    public long InputTokens { get; set; }
    public long OutputTokens { get; set; }
    public long CacheWrite5mTokens { get; set; }
    public long CacheWrite1hTokens { get; set; }
    public long CacheReadTokens { get; set; }
    public decimal CostUsd { get; set; }
    public long UnpricedRequests { get; set; }
}

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
