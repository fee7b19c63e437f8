using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>A breaker reset on one instance reaches every instance through Redis pub/sub.</summary>
public sealed partial class BreakerResetBroadcast(UpstreamCircuitBreaker breaker, ILogger<BreakerResetBroadcast> logger, IConnectionMultiplexer? redis = null)
    : IHostedService
{
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:circuit-breaker:reset");

    public async Task ResetEverywhereAsync(CancellationToken cancellationToken)
    {
        await breaker.ResetAsync();
        LogReset(logger, "operator");
        if (redis is not null)
        {
            try
            {
                await redis.GetSubscriber().PublishAsync(Channel, Environment.MachineName + ":" + Environment.ProcessId);
            }
            catch (RedisException e)
            {
                LogPublishFailed(logger, e.GetType().Name);
            }
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (redis is null)
        {
            return;
        }
        try
        {
            await redis.GetSubscriber().SubscribeAsync(Channel, (_, _) =>
            {
                _ = breaker.ResetAsync();
                LogReset(logger, "another instance");
            });
        }
        catch (RedisException e)
        {
            // The multiplexer re-subscribes when the connection comes back.
            LogPublishFailed(logger, e.GetType().Name);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream circuit breaker reset by {Origin}")]
    private static partial void LogReset(ILogger logger, string origin);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Circuit breaker reset could not use Redis ({Reason})")]
    private static partial void LogPublishFailed(ILogger logger, string reason);
}
