using ClaudeProxy.Gateway.Telemetry;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// A breaker reset on one instance reaches every instance through Redis pub/sub. The subscription is made in the
/// background: while Redis cannot be reached the instance starts and serves anyway, reports it in <c>/readyz</c>, and
/// retries with backoff until the subscription is made (after that the multiplexer restores it on every reconnect).
/// </summary>
public sealed partial class BreakerResetBroadcast(UpstreamCircuitBreaker breaker, BackgroundHealth health, ILogger<BreakerResetBroadcast> logger,
    IConnectionMultiplexer? redis = null) : IHostedService, IDisposable
{
    public const string Service = "breaker-reset-subscriber";
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:circuit-breaker:reset");
    private readonly CancellationTokenSource _stopping = new();
    private Task _subscribing = Task.CompletedTask;

    public async Task ResetEverywhereAsync(CancellationToken cancellationToken)
    {
        await breaker.ResetAsync();
        LogReset(logger, "operator");
        if (redis is not null)
        {
            try
            {
                await redis.GetSubscriber().PublishAsync(Channel, Environment.MachineName + ":" + Environment.ProcessId).WaitAsync(cancellationToken);
            }
            catch (Exception e) when (Limits.RedisFailures.Is(e))
            {
                LogPublishFailed(logger, e.GetType().Name);
            }
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (redis is not null)
        {
            _subscribing = SubscribeAsync(redis.GetSubscriber(), _stopping.Token);
        }
        return Task.CompletedTask;
    }

    private Task SubscribeAsync(ISubscriber subscriber, CancellationToken stoppingToken) =>
        RedisSubscription.KeepAsync(subscriber, Channel, OnReset, health, Service, logger, stoppingToken);

    private void OnReset(RedisChannel channel, RedisValue origin)
    {
        _ = breaker.ResetAsync();
        LogReset(logger, "another instance");
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _subscribing.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream circuit breaker reset by {Origin}")]
    private static partial void LogReset(ILogger logger, string origin);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Circuit breaker reset could not use Redis ({Reason})")]
    private static partial void LogPublishFailed(ILogger logger, string reason);
}
