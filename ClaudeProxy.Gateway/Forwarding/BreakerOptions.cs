using ClaudeProxy.Gateway.Configuration;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>When the upstream circuit breaker opens, and for how long.</summary>
public sealed class BreakerOptions
{
    public double FailureRatio { get; init; } = 0.5;
    public int MinimumThroughput { get; init; } = 10;
    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(30);

    public static BreakerOptions Load(IConfiguration config)
    {
        var settings = config.Settings();
        return new()
        {
            FailureRatio = settings.Number(S.BreakerFailureRatio),
            MinimumThroughput = (int)settings.Number(S.BreakerMinimumThroughput),
            SamplingDuration = TimeSpan.FromSeconds(settings.Number(S.BreakerSamplingSeconds)),
            BreakDuration = TimeSpan.FromSeconds(settings.Number(S.BreakerBreakSeconds)),
        };
    }
}
