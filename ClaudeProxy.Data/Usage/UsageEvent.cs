namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// One request's usage: what the gateway records, the row of <c>usage_events</c> (each property is one column,
/// listed in <see cref="UsageColumns"/>) and a line of the usage spool.
/// </summary>
public sealed record UsageEvent
{
    /// <summary>The idempotency key: the same event is stored at most once.</summary>
    public required Guid Id { get; init; }
    /// <summary>When the answer ended.</summary>
    public required DateTimeOffset Time { get; init; }
    public required string DeviceId { get; init; }
    public required string UserId { get; init; }
    /// <summary>The signed-in person's email, for requests made with a sign-in token.</summary>
    public string? UserEmail { get; init; }
    public required string OrgId { get; init; }
    /// <summary>Claude Code's <c>x-claude-code-session-id</c> and <c>x-claude-code-agent-id</c>, when sent.</summary>
    public string? SessionId { get; init; }
    public string? AgentId { get; init; }
    public required string Model { get; init; }
    /// <summary>The API route: messages, count_tokens, complete or models.</summary>
    public required string Endpoint { get; init; }
    /// <summary>The HTTP status the device received.</summary>
    public required int Status { get; init; }
    public required bool Streamed { get; init; }
    /// <summary>Tokens as the upstream reported them (0 where it did not).</summary>
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    /// <summary>Server tool uses, priced per request.</summary>
    public long WebSearchRequests { get; init; }
    public long WebFetchRequests { get; init; }
    /// <summary>At the price book's prices; see <see cref="CostEstimated"/>.</summary>
    public decimal? CostUsd { get; init; }
    public double LatencyMs { get; init; }
    /// <summary>Null when no byte of the answer came back.</summary>
    public double? TimeToFirstByteMs { get; init; }
    /// <summary>The upstream's <c>request-id</c> header.</summary>
    public string? UpstreamRequestId { get; init; }
    public required string CorrelationId { get; init; }
    /// <summary>The device went away before the answer was complete.</summary>
    public bool Cancelled { get; init; }
    /// <summary>The streamed answer carried an error event.</summary>
    public bool StreamError { get; init; }
    /// <summary>The model has no price: the cost was computed at the price book's highest prices.</summary>
    public bool CostEstimated { get; init; }
    /// <summary>The answer ended before its final usage: output tokens were estimated from the streamed content.</summary>
    public bool OutputEstimated { get; init; }
    /// <summary>The ids of the groups the request was admitted under (their policies and pools applied), separated by spaces; null when none.</summary>
    public string? GroupIds { get; init; }
    /// <summary>Claude Code's <c>x-claude-code-parent-agent-id</c>: the subagent that started this one, when sent.</summary>
    public string? ParentAgentId { get; init; }
}
