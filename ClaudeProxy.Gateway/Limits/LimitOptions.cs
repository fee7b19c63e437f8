using ClaudeProxy.Gateway.Configuration;

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
    public int BootstrapRateLimit { get; init; } = 20;
    public TimeSpan BootstrapWindow { get; init; } = TimeSpan.FromMinutes(1);
    public int? TokenLimitPerMinute { get; init; }
    public SpendPeriod SpendPeriod { get; init; } = SpendPeriod.Month;

    public static LimitOptions Load(IConfiguration config) => new()
    {
        FailureMode = (config["REDIS_FAILURE_MODE"]?.Trim().ToLowerInvariant()) switch
        {
            null or "" or "open" => RedisFailureMode.Open,
            "closed" => RedisFailureMode.Closed,
            _ => throw new GatewayConfigurationException("REDIS_FAILURE_MODE must be open or closed."),
        },
        FailOpenInstances = config["REDIS_FAILOPEN_INSTANCES"] is { Length: > 0 } ? (int)GatewayOptions.Number(config, "REDIS_FAILOPEN_INSTANCES", 0, 1, 10_000) : null,
        BootstrapRateLimit = (int)GatewayOptions.Number(config, "BOOTSTRAP_RATE_LIMIT", 20, 1, 1_000_000),
        TokenLimitPerMinute = config["TOKEN_LIMIT_PER_MINUTE"] is { Length: > 0 } ? (int)GatewayOptions.Number(config, "TOKEN_LIMIT_PER_MINUTE", 0, 1, 1e9) : null,
        SpendPeriod = (config["SPEND_CAP_PERIOD"]?.Trim().ToLowerInvariant()) switch
        {
            null or "" or "month" => SpendPeriod.Month,
            "week" => SpendPeriod.Week,
            "day" => SpendPeriod.Day,
            _ => throw new GatewayConfigurationException("SPEND_CAP_PERIOD must be day, week or month."),
        },
    };
}
