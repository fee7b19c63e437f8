using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Telemetry;

/// <summary>
/// A Redis pub/sub subscription made in the background: while Redis cannot be reached the instance starts and serves
/// anyway, reports it through <see cref="BackgroundHealth"/> (so <c>/readyz</c> shows it), and retries with backoff
/// until the subscription is made; after that the multiplexer restores it on every reconnect.
/// </summary>
public static partial class RedisSubscription
{
    public static async Task KeepAsync(ISubscriber subscriber, RedisChannel channel, Action<RedisChannel, RedisValue> handler,
        BackgroundHealth health, string service, ILogger logger, CancellationToken stoppingToken)
    {
        var backoff = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(15));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await subscriber.SubscribeAsync(channel, handler).WaitAsync(stoppingToken);
                if (health.Succeeded(service))
                {
                    LogSubscribed(logger, service);
                }
                return;
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                if (health.Failed(service, e))
                {
                    LogSubscribeFailed(logger, service, BackgroundHealth.Describe(e));
                }
                try
                {
                    // A timed-out attempt may have left the handler registered: take it off, so one message runs it once.
                    await subscriber.UnsubscribeAsync(channel, handler).WaitAsync(stoppingToken);
                }
                catch (Exception) when (!stoppingToken.IsCancellationRequested)
                {
                }
            }
            try
            {
                await Task.Delay(backoff.Next(), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot subscribe ({Service}: {Reason}); this instance serves and retries")]
    private static partial void LogSubscribeFailed(ILogger logger, string service, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Subscribed ({Service})")]
    private static partial void LogSubscribed(ILogger logger, string service);
}
