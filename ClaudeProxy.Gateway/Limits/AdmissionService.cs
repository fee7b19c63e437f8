using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Telemetry;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Admits requests against the shared Redis limits, and decides what happens when Redis is away: in
/// <see cref="RedisFailureMode.Open"/> the in-process limits take over (warned once per outage, counted, reported
/// degraded in /readyz), each instance spending at most its share of what the device had left; in
/// <see cref="RedisFailureMode.Closed"/> requests are refused. Redis limits resume by themselves once the
/// connection is back. A reservation is settled in the store that made it; a settlement Redis cannot take is
/// retried until it lands.
/// </summary>
public sealed partial class AdmissionService(
    InMemoryAdmissionStore memory,
    LimitOptions options,
    ISpendHistory history,
    GatewayMetrics metrics,
    ILogger<AdmissionService> logger,
    RedisAdmissionStore? redis = null,
    SettlementRetries? retries = null,
    IDeviceStandingSource? standing = null,
    ILiveInstances? instances = null,
    Events.SpendThresholds? thresholds = null)
{
    private int _degraded;
    private int _standingWarned;
    // Each spend counter's spend and generation in the last Redis answer this instance had.
    private readonly ConcurrentDictionary<string, LastView> _views = new(StringComparer.Ordinal);
    private const int MaxViews = 100_000;

    private sealed class LastView
    {
        public long Spent;
        public long Generation;
    }

    public bool UsesRedis => redis is not null;

    /// <summary>True while Redis is configured but unavailable.</summary>
    public bool Degraded => Volatile.Read(ref _degraded) == 1;

    /// <summary>How many instances share a device's remaining spend while Redis is away.</summary>
    public int FailOpenShare => Math.Max(1, options.FailOpenInstances ?? instances?.LiveCount ?? LimitOptions.DefaultFailOpenInstances);

    public async ValueTask<Admission> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        // The usual case in one state machine: Redis is there and answers at the first ask.
        Admission admission;
        if (redis is { IsConnected: true } store)
        {
            if (Volatile.Read(ref _degraded) == 1 && Interlocked.Exchange(ref _degraded, 0) == 1)
            {
                LogRedisBack(logger);
                memory.Clear();
            }
            try
            {
                var check = standing is not null;
                var refuseUnknown = standing?.RefusesUnknown == true;
                // The device's settlements still waiting on this instance ride along, applied before the limits are read.
                var carried = retries?.Take(request.DeviceId);
                RedisAdmissionStore.Seeds needed;
                try
                {
                    (admission, needed) = await store.AdmitAsync(request, check, refuseUnknown, null, null, carried);
                }
                catch (Exception e) when (carried is not null)
                {
                    retries!.Carried(carried, RedisFailures.Is(e) ? e : null);
                    throw;
                }
                if (carried is not null)
                {
                    retries!.Carried(carried, null);
                }
                if (needed != RedisAdmissionStore.Seeds.None)
                {
                    admission = await SeedAndAdmitAsync(store, request, check, refuseUnknown, needed, cancellationToken);
                }
                else if (admission.Spent is not null && admission.Generations is not null)
                {
                    Remember(request, admission);
                }
            }
            catch (Exception e) when (IsRedisFailure(e))
            {
                MarkDegraded(e);
                admission = await WithoutRedisAsync(request, cancellationToken);
            }
        }
        else
        {
            if (redis is not null)
            {
                MarkDegraded(null);
            }
            admission = await WithoutRedisAsync(request, cancellationToken);
        }
        thresholds?.Observe(request, admission);
        return admission;
    }

    /// <summary>Redis configured but away: in-process limits, or a refusal in closed mode; no Redis: in-process limits.</summary>
    private ValueTask<Admission> WithoutRedisAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        if (redis is not null)
        {
            if (options.FailureMode == RedisFailureMode.Closed)
            {
                return ValueTask.FromResult(new Admission(AdmissionOutcome.Unavailable, default));
            }
            metrics.RedisFallback();
        }
        return AdmitInMemoryAsync(request, cancellationToken);
    }

    /// <summary>
    /// The script asked for what it lacks instead of guessing: the device's standing or a spend counter's starting
    /// point, from Postgres. A second ask can only come from a counter that expired in between, so two rounds of seeds
    /// are enough.
    /// </summary>
    private async ValueTask<Admission> SeedAndAdmitAsync(RedisAdmissionStore store, AdmissionRequest request, bool check, bool refuseUnknown,
        RedisAdmissionStore.Seeds needed, CancellationToken cancellationToken)
    {
        Admission admission = default!;
        DeviceStanding? standingSeed = null;
        long?[]? spendSeeds = null;
        for (var round = 0; needed != RedisAdmissionStore.Seeds.None && round < 2; round++)
        {
            if (needed.HasFlag(RedisAdmissionStore.Seeds.Standing))
            {
                standingSeed = await ReadStandingAsync(request.DeviceId, cancellationToken);
            }
            for (var i = 0; i < request.Caps.Length; i++)
            {
                if (!RedisAdmissionStore.NeedsSpendSeed(needed, i))
                {
                    continue;
                }
                spendSeeds ??= new long?[request.Caps.Length];
                if (await SpentAsync(request.Caps[i], cancellationToken) is not long spent)
                {
                    return new Admission(AdmissionOutcome.SpendUnknown, default);
                }
                spendSeeds[i] = spent;
            }
            (admission, needed) = await store.AdmitAsync(request, check, refuseUnknown, standingSeed, spendSeeds);
        }
        if (needed != RedisAdmissionStore.Seeds.None)
        {
            return new Admission(AdmissionOutcome.SpendUnknown, default);
        }
        if (admission.Spent is not null && admission.Generations is not null)
        {
            Remember(request, admission);
        }
        return admission;
    }

    /// <summary>What was spent against a cap this period, from the durable record; null when it cannot be read.</summary>
    private async ValueTask<long?> SpentAsync(SpendCap cap, CancellationToken cancellationToken)
    {
        try
        {
            return await history.SpentMicrosAsync(cap.Kind, cap.Subject, cap.PeriodStart, cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // Nothing was recorded for this request yet (the script asks before it admits). Without what was already
            // spent this period the cap cannot be checked, and a cap is not guessed at.
            LogPostgresUnreadable(logger, "spend this period", e.GetType().Name, "its request is refused until it can");
            return null;
        }
    }

    private async ValueTask<DeviceStanding> ReadStandingAsync(string deviceId, CancellationToken cancellationToken)
    {
        try
        {
            return await standing!.ReadAsync(deviceId, cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // A device Redis has never seen, while Postgres is away: let it through rather than refuse every such
            // device, and store nothing, so the next request asks again.
            if (Interlocked.Exchange(ref _standingWarned, 1) == 0)
            {
                LogPostgresUnreadable(logger, "standing", e.GetType().Name, "it is not checked until it can");
            }
            return new DeviceStanding(RedisAdmissionStore.StandingUnreadable, 0);
        }
    }

    private void Remember(AdmissionRequest request, Admission admission)
    {
        // Views are per counter, and a new period's counters have new keys: the old ones are forgotten in bulk.
        if (_views.Count > MaxViews)
        {
            _views.Clear();
        }
        for (var i = 0; i < request.Caps.Length; i++)
        {
            var view = _views.GetOrAdd(request.Caps[i].Counter, static _ => new LastView());
            Volatile.Write(ref view.Spent, admission.Spent![i]);
            Volatile.Write(ref view.Generation, admission.Generations![i]);
        }
    }

    private async ValueTask<Admission> AdmitInMemoryAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        if (standing is not null)
        {
            var verdict = await standing.CheckLocallyAsync(request.DeviceId, request.PolicyVersion, cancellationToken);
            if (verdict != AdmissionOutcome.Admitted)
            {
                return new Admission(verdict, default);
            }
        }
        var (admission, missing) = await memory.AdmitAsync(request, null);
        if (missing is null)
        {
            return admission;
        }
        var seeds = new long?[request.Caps.Length];
        foreach (var i in missing)
        {
            var cap = request.Caps[i];
            if (redis is not null && _views.TryGetValue(cap.Counter, out var view))
            {
                seeds[i] = Share(cap.CapMicros, Volatile.Read(ref view.Spent));
                continue;
            }
            if (await SpentAsync(cap, cancellationToken) is not long spent)
            {
                return new Admission(AdmissionOutcome.SpendUnknown, default);
            }
            seeds[i] = redis is null ? spent : Share(cap.CapMicros, spent);
        }
        (admission, _) = await memory.AdmitAsync(request, seeds);
        return admission;
    }

    /// <summary>
    /// The in-process counter to start from while Redis is away: what is left of the cap, divided among the live
    /// instances, so that together they spend at most what was left.
    /// </summary>
    private long Share(long capMicros, long spentMicros)
    {
        var remaining = Math.Max(0, capMicros - spentMicros);
        return capMicros - remaining / FailOpenShare;
    }

    /// <summary>
    /// Settles without waiting for the answer, in the store that made the reservation. In Redis it rides on the
    /// device's next admission on this instance, or goes on its own after <see cref="LimitOptions.SettlementDelay"/>;
    /// if Redis cannot take it, it is queued and retried until it lands. Spend made in process while Redis was away is
    /// added to the Redis counter it will return to.
    /// </summary>
    public void Settle(AdmissionRequest request, Admission decision, long actualMicros, long tokens)
    {
        var counters = Counters(request.Caps);
        var settlement = new Settlement(request.DeviceId, counters, decision.Generations ?? new long[counters.Length],
            decision.Reserved ? request.ReserveMicros : 0, actualMicros, tokens, request.SpendPeriodEnd);
        switch (decision.Store)
        {
            case AdmissionStore.Redis:
                retries?.Settle(settlement);
                break;
            case AdmissionStore.Memory:
                memory.Settle(settlement);
                if (redis is not null && actualMicros > 0 && counters.Length > 0)
                {
                    var generations = new long[counters.Length];
                    for (var i = 0; i < counters.Length; i++)
                    {
                        generations[i] = _views.TryGetValue(counters[i], out var view) ? Volatile.Read(ref view.Generation) : 0;
                    }
                    retries?.Settle(settlement with { ReservedMicros = 0, Tokens = 0, Generations = generations });
                }
                break;
        }
    }

    private static string[] Counters(SpendCap[] caps)
    {
        if (caps.Length == 0)
        {
            return [];
        }
        var counters = new string[caps.Length];
        for (var i = 0; i < caps.Length; i++)
        {
            counters[i] = caps[i].Counter;
        }
        return counters;
    }

    public async ValueTask<RateDecision?> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken)
    {
        if (redis is not null)
        {
            if (redis.IsConnected)
            {
                try
                {
                    return await redis.AcquireAsync(key, limit, window);
                }
                catch (Exception e) when (IsRedisFailure(e))
                {
                    MarkDegraded(e);
                }
            }
            else
            {
                MarkDegraded(null);
            }
            if (options.FailureMode == RedisFailureMode.Closed)
            {
                return null;
            }
            metrics.RedisFallback();
        }
        return await memory.AcquireAsync(key, limit, window);
    }

    private void MarkDegraded(Exception? error)
    {
        if (Interlocked.Exchange(ref _degraded, 1) == 0)
        {
            LogRedisDown(logger, options.FailureMode == RedisFailureMode.Open ? "limits are now kept in this process only" : "requests are refused until it is back", error?.GetType().Name ?? "not connected");
        }
    }

    private static bool IsRedisFailure(Exception e) => RedisFailures.Is(e);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis is unavailable ({Reason}): {Consequence}")]
    private static partial void LogRedisDown(ILogger logger, string consequence, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Redis is back: limits are shared across instances again")]
    private static partial void LogRedisBack(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A device's {What} could not be read from Postgres ({Reason}): {Consequence}")]
    private static partial void LogPostgresUnreadable(ILogger logger, string what, string reason, string consequence);
}
