using ClaudeProxy.Gateway.Configuration;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>When the upstream circuit breaker opens, and for how long.</summary>
public sealed class BreakerOptions
{
    public double FailureRatio { get; init; } = 0.5;
    public int MinimumThroughput { get; init; } = 10;
    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(30);

    public static BreakerOptions Load(IConfiguration config) => new()
    {
        FailureRatio = GatewayOptions.Number(config, "BREAKER_FAILURE_RATIO", 0.5, 0.01, 1),
        MinimumThroughput = (int)GatewayOptions.Number(config, "BREAKER_MINIMUM_THROUGHPUT", 10, 2, 1_000_000),
        SamplingDuration = TimeSpan.FromSeconds(GatewayOptions.Number(config, "BREAKER_SAMPLING_SECONDS", 30, 0.5, 86_400)),
        BreakDuration = TimeSpan.FromSeconds(GatewayOptions.Number(config, "BREAKER_BREAK_SECONDS", 30, 0.5, 86_400)),
    };
}
