namespace ClaudeProxy.Gateway.Data;

// The analytics rollups. The usage writer keeps them in the transaction that stores the events (see UsageSql), from the
// rows new to usage_events only, so a replayed batch never counts twice; refusal_rollups is kept by RefusalRollupWriter.
// Counters are the sums of the usage_events columns of the same names; errors are the requests with status 400 and above.

/// <summary>Usage per UTC day, user (<c>usage_events.user_id</c>) and model.</summary>
public sealed class UserRollup
{
    public DateTimeOffset BucketStart { get; init; }
    public required string UserId { get; init; }
    public required string Model { get; init; }
    public long Requests { get; init; }
    public long Errors { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    public decimal CostUsd { get; init; }
}

/// <summary>
/// Usage per UTC day, group and model: a request admitted under several groups (<c>usage_events.group_ids</c>) counts
/// in each of them, so the groups' sums can exceed the total.
/// </summary>
public sealed class GroupRollup
{
    public DateTimeOffset BucketStart { get; init; }
    public required string GroupId { get; init; }
    public required string Model { get; init; }
    public long Requests { get; init; }
    public long Errors { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    public decimal CostUsd { get; init; }
}

/// <summary>
/// Usage per UTC hour, model and outcome (the status the device received, and whether the stream carried an error):
/// the organisation's spend and caching by model, and every admitted request for the error rates.
/// </summary>
public sealed class ModelRollup
{
    public DateTimeOffset BucketStart { get; init; }
    public required string Model { get; init; }
    public int Status { get; init; }
    public bool StreamError { get; init; }
    public long Requests { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    public decimal CostUsd { get; init; }
}

/// <summary>
/// One Claude Code session's main conversation (<see cref="AgentId"/> empty) or one of its subagents, per model, over the
/// session's whole life. The device, email and parent are those first recorded.
/// </summary>
public sealed class SessionRollup
{
    public required string SessionId { get; init; }
    public required string AgentId { get; init; }
    public required string Model { get; init; }
    public required string DeviceId { get; init; }
    public string? UserEmail { get; init; }
    public string? ParentAgentId { get; init; }
    public DateTimeOffset FirstSeen { get; init; }
    public DateTimeOffset LastSeen { get; init; }
    public long Requests { get; init; }
    public long Errors { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public long CacheWrite5mTokens { get; init; }
    public long CacheWrite1hTokens { get; init; }
    public long CacheReadTokens { get; init; }
    public decimal CostUsd { get; init; }
}

/// <summary>
/// Time to first byte of the answers to messages requests, per UTC day and model, as a histogram: bucket i counts the
/// answers whose first byte came in [2^(i/8), 2^((i+1)/8)) ms (bucket 0 also takes anything faster).
/// </summary>
public sealed class TtftRollup
{
    public DateTimeOffset BucketStart { get; init; }
    public required string Model { get; init; }
    public short Bucket { get; init; }
    public long Requests { get; init; }
}

/// <summary>Requests the gateway refused itself (no usage event), per UTC hour and reason of <c>claudeproxy.requests.rejected</c>.</summary>
public sealed class RefusalRollup
{
    public DateTimeOffset BucketStart { get; init; }
    public required string Reason { get; init; }
    public long Requests { get; init; }
}
