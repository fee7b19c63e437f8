namespace ClaudeProxy.Gateway.Usage;

/// <summary>One request's usage, as recorded. Id is the idempotency key: the same event is stored at most once.</summary>
public sealed record UsageEvent
{
    public required Guid Id { get; init; }
    public required DateTimeOffset Time { get; init; }
    public required string DeviceId { get; init; }
    public required string UserId { get; init; }
    public required string OrgId { get; init; }
    public string? SessionId { get; init; }
    public string? AgentId { get; init; }
    public required string Model { get; init; }
    public required string Endpoint { get; init; }
    public required int Status { get; init; }
    public required bool Streamed { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    public long WebSearchRequests { get; init; }
    public long WebFetchRequests { get; init; }
    public decimal? CostUsd { get; init; }
    public double LatencyMs { get; init; }
    public double? TimeToFirstByteMs { get; init; }
    public string? UpstreamRequestId { get; init; }
    public required string CorrelationId { get; init; }
    public bool Cancelled { get; init; }
    public bool StreamError { get; init; }
    /// <summary>The model has no price: the cost was computed at the price book's highest prices.</summary>
    public bool CostEstimated { get; init; }
    /// <summary>The answer ended before its final usage: output tokens were estimated from the streamed content.</summary>
    public bool OutputEstimated { get; init; }
}

/// <summary>Where usage events go. Enqueue never waits for the database.</summary>
public interface IUsageSink
{
    void Enqueue(UsageEvent usage);
}
