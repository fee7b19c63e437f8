using System.Threading.Channels;
using ClaudeProxy.Gateway.Telemetry;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Wakes the webhook dispatchers as soon as deliveries are due: this instance's at once, the others' through Redis
/// pub/sub (without Redis, or while it is away, they find the deliveries at their next poll).
/// </summary>
public sealed partial class DeliverySignal(BackgroundHealth health, ILogger<DeliverySignal> logger, IConnectionMultiplexer? redis = null) : IHostedService, IDisposable
{
    public const string Service = "webhook-wake-subscriber";
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:webhooks:due");
    private readonly Channel<bool> _wake = System.Threading.Channels.Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private Task _subscribing = Task.CompletedTask;

    public void Wake() => _wake.Writer.TryWrite(true);

    public async Task WakeEverywhereAsync(CancellationToken cancellationToken)
    {
        Wake();
        if (redis is null)
        {
            return;
        }
        try
        {
            await redis.GetSubscriber().PublishAsync(Channel, "due").WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
        }
        catch (Exception e) when (Limits.RedisFailures.Is(e) || e is TimeoutException)
        {
            LogPublishFailed(logger, e.GetType().Name);
        }
    }

    /// <summary>Returns when woken, or after <paramref name="poll"/>.</summary>
    public async Task WaitAsync(TimeSpan poll, TimeProvider time, CancellationToken cancellationToken)
    {
        using var timer = new CancellationTokenSource(poll, time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            await _wake.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (redis is not null)
        {
            _subscribing = RedisSubscription.KeepAsync(redis.GetSubscriber(), Channel, (_, _) => Wake(), health, Service, logger, _stopping.Token);
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _subscribing.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Debug, Message = "Could not tell the other instances that webhook deliveries are due ({Reason}); they find them at their next poll")]
    private static partial void LogPublishFailed(ILogger logger, string reason);
}
