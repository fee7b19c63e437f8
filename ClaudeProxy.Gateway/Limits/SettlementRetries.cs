using System.Collections.Concurrent;
using System.Threading.Channels;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Settlements of Redis reservations. Each waits briefly (<see cref="LimitOptions.SettlementDelay"/>) for its device's
/// next admission on this instance, which carries it to Redis in the same script, applied before anything is read; one
/// that no admission takes in that time is sent on its own, summed with the device's others. So a device's next request
/// here always sees what its last one cost, and every instance sees it within the delay. Settlements Redis could not
/// take (it was away) are retried in order from a bounded queue until they land, with a backoff while Redis stays away.
/// A settlement is given up only once its spend period has ended (its counter no longer matters), when the queue is
/// full, or when Redis may already have applied it; each is counted. A request hands its settlement over and goes.
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

    // Settlements waiting for their device's next admission, by device; a list once taken is closed to additions.
    private readonly ConcurrentDictionary<string, Deferred> _deferred = new(StringComparer.Ordinal);
    private readonly Progress _handedOver = new();
    private readonly Progress _settled = new();
    // Settlements in _deferred. The flush timer is armed while there are any, and disarmed when an admission took the
    // last: a device that keeps sending wakes nothing. Each side changes the count (a full fence) before touching the
    // timer, and a disarm looks at the count again, so an item that arrives meanwhile is never left without a timer.
    private int _waiting;
    private ITimer? _flushTimer;

    private sealed class Deferred
    {
        public readonly List<Settlement> Items = new(4);
        public bool Taken;
    }

    public int Pending => size.Pending;

    /// <summary>
    /// Completes once every settlement handed over before the call has been answered by Redis or queued for a retry
    /// (see <see cref="EmptyAsync"/> for the retries).
    /// </summary>
    public Task SettledAsync() => _settled.WaitFor(_handedOver.Value);

    /// <summary>Completes once this many settlements in all have been answered by Redis or queued for a retry.</summary>
    public Task SettledAsync(long count) => _settled.WaitFor(count);

    /// <summary>Completes once no settlement waits for Redis.</summary>
    public Task EmptyAsync()
    {
        lock (_gate)
        {
            return _empty.Task;
        }
    }

    /// <summary>
    /// Hands a settlement over: it waits for its device's next admission, or goes on its own after the delay (at once
    /// when the delay is zero). One Redis cannot take is queued and retried until it lands; one Redis may have applied
    /// before its connection broke is given up, since applying it twice would be as wrong as never.
    /// </summary>
    public void Settle(Settlement settlement)
    {
        if (options.SettlementDelay > TimeSpan.Zero)
        {
            Defer(settlement);
            return;
        }
        SettleNow(settlement);
    }

    private void Defer(Settlement settlement)
    {
        while (true)
        {
            var deferred = _deferred.GetOrAdd(settlement.DeviceId, static _ => new Deferred());
            lock (deferred)
            {
                if (!deferred.Taken)
                {
                    _handedOver.Add(1);
                    deferred.Items.Add(settlement);
                    break;
                }
            }
        }
        if (Interlocked.Increment(ref _waiting) == 1)
        {
            ArmFlush();
        }
    }

    private void ArmFlush() => (_flushTimer ??= CreateFlushTimer()).Change(options.SettlementDelay, Timeout.InfiniteTimeSpan);

    private ITimer CreateFlushTimer()
    {
        lock (_gate)
        {
            return _flushTimer ?? time.CreateTimer(static state => _ = ((SettlementRetries)state!).FlushDueAsync(), this,
                Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The delay has passed: whatever no admission took goes now.</summary>
    private async Task FlushDueAsync()
    {
        await FlushAsync();
        if (Volatile.Read(ref _waiting) > 0)
        {
            ArmFlush();
        }
    }

    /// <summary>
    /// The device's settlements still waiting, summed, for its admission to carry; null when there are none. The
    /// caller reports the outcome with <see cref="Carried"/>.
    /// </summary>
    public SettlementBatch? Take(string deviceId)
    {
        if (_deferred.IsEmpty || !_deferred.TryRemove(deviceId, out var deferred))
        {
            return null;
        }
        Settlement[] parts;
        lock (deferred)
        {
            deferred.Taken = true;
            parts = [.. deferred.Items];
        }
        if (parts.Length > 0 && Interlocked.Add(ref _waiting, -parts.Length) == 0)
        {
            _flushTimer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            if (Volatile.Read(ref _waiting) > 0)
            {
                ArmFlush();
            }
        }
        return parts.Length == 0 ? null : SettlementBatch.Of(parts);
    }

    /// <summary>What became of a batch an admission carried: applied with it (null), or not, because of <paramref name="error"/>.</summary>
    public void Carried(SettlementBatch batch, Exception? error)
    {
        if (error is not null)
        {
            Failed(batch, error);
        }
        _settled.Add(batch.Parts.Length);
    }

    private void Failed(SettlementBatch batch, Exception error)
    {
        if (RedisFailures.MayHaveApplied(error))
        {
            foreach (var _ in batch.Parts)
            {
                metrics.SettlementDropped("outcome_unknown");
            }
            LogSettleFailed(logger, error.GetType().Name);
            return;
        }
        foreach (var part in batch.Parts)
        {
            Enqueue(part);
        }
    }

    /// <summary>Sends every waiting settlement, one script per device, and waits for the answers.</summary>
    private async Task FlushAsync()
    {
        List<Task>? sends = null;
        foreach (var deviceId in _deferred.Keys)
        {
            if (Take(deviceId) is { } batch)
            {
                (sends ??= []).Add(SendAsync(batch));
            }
        }
        if (sends is not null)
        {
            await Task.WhenAll(sends);
        }
    }

    private async Task SendAsync(SettlementBatch batch)
    {
        Exception? error = null;
        try
        {
            if (!redis.IsConnected)
            {
                foreach (var part in batch.Parts)
                {
                    Enqueue(part);
                }
            }
            else
            {
                await redis.SettleAsync(batch);
            }
        }
        catch (Exception e) when (RedisFailures.Is(e))
        {
            error = e;
        }
        catch (Exception e)
        {
            LogSettleFailed(logger, e.GetType().Name);
        }
        Carried(batch, error);
    }

    private async Task FlushAtStopAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, time, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        // Requests have drained by now: nothing of theirs is left behind.
        await FlushAsync();
    }

    /// <summary>
    /// Settles without waiting for the answer: the command is written to the connection before this returns, so this
    /// instance's later commands for the device are ordered after it.
    /// </summary>
    private void SettleNow(Settlement settlement)
    {
        _handedOver.Add(1);
        _ = SendAsync(SettlementBatch.Of([settlement]));
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

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(FlushAtStopAsync(stoppingToken), RetryLoopAsync(stoppingToken));

    private async Task RetryLoopAsync(CancellationToken stoppingToken)
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
