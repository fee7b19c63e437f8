using ClaudeProxy.Gateway.Telemetry;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Admits requests against the shared Redis limits, and decides what happens when Redis is away: in
/// <see cref="RedisFailureMode.Open"/> the in-process limits take over (warned once per outage, counted, reported
/// degraded in /readyz); in <see cref="RedisFailureMode.Closed"/> requests are refused. Redis limits resume by
/// themselves once the connection is back.
/// </summary>
public sealed partial class AdmissionService(
    InMemoryAdmissionStore memory,
    LimitOptions options,
    ISpendHistory history,
    GatewayMetrics metrics,
    ILogger<AdmissionService> logger,
    RedisAdmissionStore? redis = null)
{
    private int _degraded;

    public bool UsesRedis => redis is not null;

    /// <summary>True while Redis is configured but unavailable.</summary>
    public bool Degraded => Volatile.Read(ref _degraded) == 1;

    public async ValueTask<Admission> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var store = await StoreAsync();
        if (store is null)
        {
            return new Admission(AdmissionOutcome.Unavailable, default);
        }
        try
        {
            return await AdmitWithAsync(store, request, cancellationToken);
        }
        catch (Exception e) when (store == redis && IsRedisFailure(e))
        {
            return await FallbackAsync(s => AdmitWithAsync(s, request, cancellationToken), e);
        }
    }

    private async ValueTask<Admission> AdmitWithAsync(IAdmissionStore store, AdmissionRequest request, CancellationToken cancellationToken)
    {
        var (admission, needsSeed) = await store.AdmitAsync(request, null, cancellationToken);
        if (needsSeed)
        {
            long seed;
            try
            {
                seed = await history.SpentMicrosAsync(request.DeviceId, request.SpendPeriodStart, cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // Nothing was recorded for this request yet (the store asks before it admits). Without what the
                // device already spent this period its cap cannot be checked, and a cap is not guessed at.
                LogSpendUnknown(logger, e.GetType().Name);
                return new Admission(AdmissionOutcome.SpendUnknown, default);
            }
            (admission, _) = await store.AdmitAsync(request, seed, cancellationToken);
        }
        return admission;
    }

    /// <summary>
    /// Settles without waiting for the answer: the command is written to the Redis connection before this returns,
    /// so this instance's later commands for the device are ordered after it, and the request that caused it
    /// does not wait a round trip for bookkeeping.
    /// </summary>
    public void Settle(Settlement settlement, TimeSpan spendTtl)
    {
        var pending = SettleAsync(settlement, spendTtl, CancellationToken.None);
        if (!pending.IsCompletedSuccessfully)
        {
            _ = ObserveAsync(pending);
        }
    }

    private async Task ObserveAsync(ValueTask pending)
    {
        try
        {
            await pending;
        }
        catch (Exception e)
        {
            LogSettleFailed(logger, e.GetType().Name);
        }
    }

    public async ValueTask SettleAsync(Settlement settlement, TimeSpan spendTtl, CancellationToken cancellationToken)
    {
        var store = await StoreAsync() ?? (IAdmissionStore)memory;
        try
        {
            await store.SettleAsync(settlement, spendTtl, cancellationToken);
        }
        catch (Exception e) when (store == redis && IsRedisFailure(e))
        {
            LogSettleFailed(logger, e.GetType().Name);
        }
    }

    public async ValueTask<RateDecision?> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken)
    {
        var store = await StoreAsync();
        if (store is null)
        {
            return null;
        }
        try
        {
            return await store.AcquireAsync(key, limit, window, cancellationToken);
        }
        catch (Exception e) when (store == redis && IsRedisFailure(e))
        {
            return await FallbackAsync<RateDecision?>(async s => await s.AcquireAsync(key, limit, window, cancellationToken), e);
        }
    }

    /// <summary>The store to use now, or null when Redis is down and the mode is closed.</summary>
    private ValueTask<IAdmissionStore?> StoreAsync()
    {
        if (redis is null)
        {
            return ValueTask.FromResult<IAdmissionStore?>(memory);
        }
        if (redis.IsConnected)
        {
            if (Interlocked.Exchange(ref _degraded, 0) == 1)
            {
                LogRedisBack(logger);
                memory.Clear();
            }
            return ValueTask.FromResult<IAdmissionStore?>(redis);
        }
        MarkDegraded(null);
        return ValueTask.FromResult<IAdmissionStore?>(options.FailureMode == RedisFailureMode.Open ? memory : null);
    }

    private async ValueTask<T> FallbackAsync<T>(Func<IAdmissionStore, ValueTask<T>> inMemory, Exception error)
    {
        MarkDegraded(error);
        if (options.FailureMode == RedisFailureMode.Closed)
        {
            return typeof(T) == typeof(Admission) ? (T)(object)new Admission(AdmissionOutcome.Unavailable, default) : default!;
        }
        metrics.RedisFallback();
        return await inMemory(memory);
    }

    private void MarkDegraded(Exception? error)
    {
        if (Interlocked.Exchange(ref _degraded, 1) == 0)
        {
            LogRedisDown(logger, options.FailureMode == RedisFailureMode.Open ? "limits are now kept in this process only" : "requests are refused until it is back", error?.GetType().Name ?? "not connected");
        }
        if (options.FailureMode == RedisFailureMode.Open && error is null)
        {
            metrics.RedisFallback();
        }
    }

    private static bool IsRedisFailure(Exception e) => e is RedisException or TimeoutException or ObjectDisposedException;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis is unavailable ({Reason}): {Consequence}")]
    private static partial void LogRedisDown(ILogger logger, string consequence, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Redis is back: limits are shared across instances again")]
    private static partial void LogRedisBack(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A device's spend this period could not be read from Postgres ({Reason}): its request is refused until it can")]
    private static partial void LogSpendUnknown(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not settle a request in Redis ({Reason})")]
    private static partial void LogSettleFailed(ILogger logger, string reason);
}
