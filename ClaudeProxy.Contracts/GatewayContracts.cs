namespace ClaudeProxy.Contracts;

/// <summary>The states <see cref="BreakerStatus.State"/> takes.</summary>
public static class BreakerState
{
    public const string Closed = "closed";
    public const string Open = "open";
    public const string HalfOpen = "half-open";
}

/// <summary>One instance's upstream circuit breaker: in the management API's gateway list and the device API's <c>GET /admin/circuit-breaker</c>.</summary>
public sealed record BreakerStatus(string State, DateTimeOffset Since, DateTimeOffset? OpenUntil, long RecentFailures, long RecentSuccesses,
    double FailureRatio, int MinimumThroughput, double SamplingSeconds, double BreakSeconds);

/// <summary>A gateway instance as its Redis heartbeat announces it.</summary>
public sealed record GatewayInstance(string Id, string Host, int ProcessId, DateTimeOffset StartedAt, DateTimeOffset LastSeen, BreakerStatus Breaker);
