using System.Threading.Channels;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Settlements of Redis reservations: sent without waiting for the answer, and those Redis could not take (it was
/// away) retried in order from a bounded queue until they land, with a backoff while Redis stays away. A settlement
/// is given up only once its spend period has ended (its counter no longer matters), when the queue is full, or when
/// Redis may already have applied it; each is counted. A request hands its settlement over and goes.
/// </summary>
public sealed partial class SettlementRetries(
    RedisAdmissionStore redis,
    LimitOptions options,
    LimitMetrics metrics,
    SettlementQueueSize size,
    TimeProvider time,
    ILogger<SettlementRetries> logger) : BackgroundService
{
    private int _fullWarned;
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan LongestDelay = TimeSpan.FromSeconds(2);
    // Tokens feed a one-minute budget: older than that they would count against a minute they were not used in.
    private static readonly TimeSpan TokenRelevance = TimeSpan.FromSeconds(60);

    private readonly Channel<(Settlement Settlement, DateTimeOffset Queued)> _queue =
        Channel.CreateBounded<(Settlement, DateTimeOffset)>(new BoundedChannelOptions(options.SettlementQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
    private readonly Lock _gate = new();
    private TaskCompletionSource _empty = Completed();
    private int _warned;

    public int Pending => size.Pending;

    /// <summary>Completes once no settlement waits for Redis.</summary>
    public Task EmptyAsync()
    {
        lock (_gate)
        {
            return _empty.Task;
        }
    }

    /// <summary>
    /// Settles in Redis without waiting for the answer: the command is written to the connection before this returns,
    /// so this instance's later commands for the device are ordered after it. One Redis cannot take is queued and
    /// retried until it lands; one Redis may have applied before its connection broke is given up, since applying it
    /// twice would be as wrong as never.
    /// </summary>
    public void Settle(Settlement settlement)
    {
        if (!redis.IsConnected)
        {
            Enqueue(settlement);
            return;
        }
        var pending = redis.SettleAsync(settlement);
        if (!pending.IsCompletedSuccessfully)
        {
            _ = ObserveAsync(pending, settlement);
        }
    }

    private async Task ObserveAsync(ValueTask pending, Settlement settlement)
    {
        try
        {
            await pending;
        }
        catch (Exception e) when (RedisFailures.Is(e))
        {
            if (RedisFailures.MayHaveApplied(e))
            {
                metrics.SettlementDropped("outcome_unknown");
                LogSettleFailed(logger, e.GetType().Name);
            }
            else
            {
                Enqueue(settlement);
            }
        }
        catch (Exception e)
        {
            LogSettleFailed(logger, e.GetType().Name);
        }
    }

    public void Enqueue(Settlement settlement)
    {
        lock (_gate)
        {
            if (!_queue.Writer.TryWrite((settlement, time.GetUtcNow())))
            {
                metrics.SettlementDropped("queue_full");
                if (Interlocked.Exchange(ref _fullWarned, 1) == 0)
                {
                    // Once per episode: while the queue is full every settlement would say the same.
                    LogDropped(logger, "the retry queue is full; further drops are counted in claudeproxy.limits.settlements.dropped");
                }
                return;
            }
            Volatile.Write(ref _fullWarned, 0);
            if (size.Increment() == 1)
            {
                _empty = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
        metrics.SettlementRetried();
        if (Interlocked.Exchange(ref _warned, 1) == 0)
        {
            LogQueued(logger);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = FirstDelay;
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                while (_queue.Reader.TryPeek(out var item))
                {
                    var now = time.GetUtcNow();
                    var end = item.Settlement.SpendPeriodEnd;
                    // Without spend caps (no period end) only the tokens are settled, and they matter for TokenRelevance.
                    if (end == default ? now - item.Queued > TokenRelevance : now >= end && item.Settlement.Tokens == 0 || now >= end + TokenRelevance)
                    {
                        Done();
                        metrics.SettlementDropped("period_ended");
                        continue;
                    }
                    var settlement = now - item.Queued > TokenRelevance ? item.Settlement with { Tokens = 0 } : item.Settlement;
                    if (redis.IsConnected)
                    {
                        try
                        {
                            await redis.SettleAsync(settlement);
                            Done();
                            delay = FirstDelay;
                            continue;
                        }
                        catch (Exception e) when (RedisFailures.MayHaveApplied(e))
                        {
                            // Redis may have applied it before the connection broke: applying it twice would be as wrong as never.
                            Done();
                            metrics.SettlementDropped("outcome_unknown");
                            continue;
                        }
                        catch (Exception e) when (RedisFailures.Is(e))
                        {
                            // Still away: wait and try the same one again, so settlements land in the order they were made.
                        }
                    }
                    await Task.Delay(delay, time, stoppingToken);
                    delay = TimeSpan.FromTicks(Math.Min(LongestDelay.Ticks, delay.Ticks * 2));
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            if (size.Pending > 0)
            {
                LogLeftBehind(logger, size.Pending);
            }
        }
    }

    private void Done()
    {
        _queue.Reader.TryRead(out _);
        lock (_gate)
        {
            if (size.Decrement() == 0)
            {
                _empty.TrySetResult();
                Interlocked.Exchange(ref _warned, 0);
            }
        }
    }

    private static TaskCompletionSource Completed()
    {
        var done = new TaskCompletionSource();
        done.SetResult();
        return done;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis could not take a settlement: it is queued and retried until Redis is back")]
    private static partial void LogQueued(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not settle a request in Redis ({Reason})")]
    private static partial void LogSettleFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A settlement for Redis was given up: {Reason}")]
    private static partial void LogDropped(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} settlements for Redis were still waiting at shutdown")]
    private static partial void LogLeftBehind(ILogger logger, int count);
}
