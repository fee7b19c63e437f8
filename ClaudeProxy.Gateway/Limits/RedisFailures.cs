using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>How the gateway tells a Redis failure from a bug, in one place.</summary>
public static class RedisFailures
{
    /// <summary>Redis could not be reached or did not answer in time (<see cref="RedisTimeoutException"/> is a <see cref="TimeoutException"/>, not a <see cref="RedisException"/>).</summary>
    public static bool Is(Exception e) => e is RedisException or TimeoutException or ObjectDisposedException;

    /// <summary>The command had been sent when the connection failed: Redis may have applied it, so it must not be sent again.</summary>
    public static bool MayHaveApplied(Exception e) =>
        e is RedisConnectionException { CommandStatus: CommandStatus.Sent } or RedisTimeoutException { Commandstatus: CommandStatus.Sent };
}
