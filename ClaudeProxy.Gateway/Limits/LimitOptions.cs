using ClaudeProxy.Gateway.Configuration;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Limits;

public enum RedisFailureMode { Open, Closed }

public enum SpendPeriod { Day, Week, Month }

/// <summary>Settings of the limiter: Redis failure mode, bootstrap abuse limit, token budget and spend period.</summary>
public sealed class LimitOptions
{
    /// <summary>Instances assumed to share a device's remaining spend while Redis is away, when none were ever counted.</summary>
    public const int DefaultFailOpenInstances = 2;

    public RedisFailureMode FailureMode { get; init; } = RedisFailureMode.Open;

    /// <summary>
    /// How many instances split a device's remaining spend while Redis is away; null counts them from the
    /// heartbeats in Redis (the last count before the outage), or assumes <see cref="DefaultFailOpenInstances"/>.
    /// </summary>
    public int? FailOpenInstances { get; init; }

    /// <summary>Settlements that may wait for Redis at once; beyond that they are dropped and counted.</summary>
    public int SettlementQueueCapacity { get; init; } = 100_000;

    /// <summary>
    /// How long a settlement waits for its device's next admission to carry it to Redis before it is sent on its own;
    /// zero sends each at once, in a round trip of its own.
    /// </summary>
    public TimeSpan SettlementDelay { get; init; } = TimeSpan.FromMilliseconds(DefaultSettlementDelayMs);

    public const int DefaultSettlementDelayMs = 2;
    public int BootstrapRateLimit { get; init; } = 20;
    public TimeSpan BootstrapWindow { get; init; } = TimeSpan.FromMinutes(1);
    public int? TokenLimitPerMinute { get; init; }
    public SpendPeriod SpendPeriod { get; init; } = SpendPeriod.Month;

    public static LimitOptions Load(IConfiguration config)
    {
        var settings = config.Settings();
        return new()
        {
            FailureMode = settings.Choice<RedisFailureMode>(S.RedisFailureMode),
            FailOpenInstances = (int?)settings.OptionalNumber(S.RedisFailOpenInstances),
            BootstrapRateLimit = (int)settings.Number(S.BootstrapRateLimit),
            TokenLimitPerMinute = (int?)settings.OptionalNumber(S.TokenLimitPerMinute),
            SpendPeriod = settings.Choice<SpendPeriod>(S.SpendCapPeriod),
            SettlementDelay = TimeSpan.FromMilliseconds(settings.Number(S.SettlementDelayMs)),
        };
    }
}
