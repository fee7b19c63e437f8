using System.Collections.Concurrent;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Limits in process memory: exact for one instance, and the fallback when Redis is away. The same rules as the
/// Redis script: a sliding window log of admission times, per-second token buckets over the last minute, and a
/// spend counter per period that a request reserves against before it is forwarded. Plain limiter keys
/// (<see cref="AcquireAsync"/>) are kept apart from device ids, so no device id can share an address's limit.
/// </summary>
public sealed class InMemoryAdmissionStore(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, DeviceState> _states = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DeviceState> _limiters = new(StringComparer.Ordinal);
    // Spend against each cap's counter (a device's own, a pool, the organisation's), and when each counter's period ends.
    private readonly Dictionary<string, long> _spend = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTimeOffset> _spendEnds = new(StringComparer.Ordinal);
    private long _calls;

    /// <summary>
    /// Admits or refuses, or asks for seeds: the index of each cap whose counter this process does not hold yet, when
    /// <paramref name="spentSeedsMicros"/> does not give it.
    /// </summary>
    public ValueTask<(Admission Admission, List<int>? NeedsSeeds)> AdmitAsync(AdmissionRequest request, long?[]? spentSeedsMicros)
    {
        var now = time.GetUtcNow();
        var state = State(_states, request.DeviceId, now);
        var caps = request.Caps;
        lock (state)
        {
            var rate = state.Log.Peek(now.UtcTicks, request.RateLimit, request.RateWindow.Ticks);
            if (!rate.Allowed)
            {
                return Result(new Admission(AdmissionOutcome.RateLimited, rate, rate.RetryAfter));
            }
            if (request.TokenLimit is int tokenLimit)
            {
                var (used, retry) = state.Tokens.Used(now);
                if (used >= tokenLimit)
                {
                    return Result(new Admission(AdmissionOutcome.TokenBudgetExhausted, rate, retry, used));
                }
            }
            long[]? spent = null;
            if (caps.Length > 0)
            {
                // Pools and the organisation's counter are shared by devices: one lock for every counter.
                lock (_spend)
                {
                    List<int>? missing = null;
                    spent = new long[caps.Length];
                    for (var i = 0; i < caps.Length; i++)
                    {
                        if (!_spend.TryGetValue(caps[i].Counter, out spent[i]))
                        {
                            if (spentSeedsMicros?[i] is not long seed)
                            {
                                (missing ??= []).Add(i);
                                continue;
                            }
                            _spend[caps[i].Counter] = spent[i] = seed;
                            _spendEnds[caps[i].Counter] = caps[i].PeriodEnd;
                        }
                    }
                    if (missing is not null)
                    {
                        return ValueTask.FromResult((default(Admission), (List<int>?)missing));
                    }
                    for (var i = 0; i < caps.Length; i++)
                    {
                        if (spent[i] + request.ReserveMicros > caps[i].CapMicros)
                        {
                            return Result(new Admission(AdmissionOutcome.SpendCapReached, rate, Spent: spent, Binding: i));
                        }
                    }
                    for (var i = 0; i < caps.Length; i++)
                    {
                        _spend[caps[i].Counter] = spent[i] += request.ReserveMicros;
                    }
                }
            }
            var admitted = state.Log.Add(now.UtcTicks, request.RateLimit, request.RateWindow.Ticks);
            return Result(new Admission(AdmissionOutcome.Admitted, admitted, Reserved: caps.Length > 0, Store: AdmissionStore.Memory, Spent: spent,
                Binding: spent is null ? -1 : Admission.Closest(caps, spent, request.ReserveMicros)));
        }
    }

    public void Settle(Settlement settlement)
    {
        var now = time.GetUtcNow();
        if (settlement.Tokens > 0)
        {
            var state = State(_states, settlement.DeviceId, now);
            lock (state)
            {
                state.Tokens.Add(now, settlement.Tokens);
            }
        }
        if (settlement.ReservedMicros > 0)
        {
            lock (_spend)
            {
                foreach (var counter in settlement.Counters)
                {
                    if (_spend.TryGetValue(counter, out var spent))
                    {
                        _spend[counter] = spent - settlement.ReservedMicros + settlement.ActualMicros;
                    }
                }
            }
        }
    }

    public ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window)
    {
        var now = time.GetUtcNow();
        var state = State(_limiters, key, now);
        lock (state)
        {
            var peek = state.Log.Peek(now.UtcTicks, limit, window.Ticks);
            return ValueTask.FromResult(peek.Allowed ? state.Log.Add(now.UtcTicks, limit, window.Ticks) : peek);
        }
    }

    /// <summary>Forgets every counter: what a process restart would do. Used when Redis takes over again.</summary>
    public void Clear()
    {
        _states.Clear();
        _limiters.Clear();
        lock (_spend)
        {
            _spend.Clear();
            _spendEnds.Clear();
        }
    }

    private static ValueTask<(Admission, List<int>?)> Result(Admission admission) => ValueTask.FromResult((admission, (List<int>?)null));

    private DeviceState State(ConcurrentDictionary<string, DeviceState> states, string key, DateTimeOffset now)
    {
        if (Interlocked.Increment(ref _calls) % 8192 == 0)
        {
            Sweep(_states, now);
            Sweep(_limiters, now);
            SweepSpend(now);
        }
        return states.GetOrAdd(key, static _ => new DeviceState());
    }

    // A counter is kept a day past its period, as Redis keeps it.
    private void SweepSpend(DateTimeOffset now)
    {
        lock (_spend)
        {
            foreach (var (counter, end) in _spendEnds.ToArray())
            {
                if (end.AddDays(1) < now)
                {
                    _spend.Remove(counter);
                    _spendEnds.Remove(counter);
                }
            }
        }
    }

    private static void Sweep(ConcurrentDictionary<string, DeviceState> states, DateTimeOffset now)
    {
        foreach (var (k, s) in states)
        {
            lock (s)
            {
                if (s.Idle(now))
                {
                    states.TryRemove(k, out _);
                }
            }
        }
    }

    private sealed class DeviceState
    {
        public SlidingWindowLog Log { get; } = new();
        public MinuteCounter Tokens { get; } = new();

        public bool Idle(DateTimeOffset now) => Log.IdleSince(now.UtcTicks) && Tokens.Used(now).Used == 0;
    }
}

/// <summary>The admission times of at most <c>limit</c> requests, in a ring. Not thread-safe: callers lock.</summary>
internal sealed class SlidingWindowLog
{
    private long[] _times = [];
    private int _start;
    private int _count;
    private long _windowTicks;

    public bool IdleSince(long now) => _count == 0 || _times[(_start + _count - 1) % _times.Length] + _windowTicks <= now;

    public RateDecision Peek(long now, int limit, long windowTicks)
    {
        _windowTicks = windowTicks;
        if (_times.Length != limit)
        {
            Resize(limit);
        }
        while (_count > 0 && _times[_start] + windowTicks <= now)
        {
            _start = (_start + 1) % _times.Length;
            _count--;
        }
        if (_count >= limit)
        {
            var reset = _times[_start] + windowTicks;
            return new RateDecision(false, limit, 0, new DateTimeOffset(reset, TimeSpan.Zero), TimeSpan.FromTicks(reset - now));
        }
        return new RateDecision(true, limit, limit - _count, new DateTimeOffset((_count > 0 ? _times[_start] : now) + windowTicks, TimeSpan.Zero), TimeSpan.Zero);
    }

    /// <summary>Records an admission; call right after a <see cref="Peek"/> that allowed it.</summary>
    public RateDecision Add(long now, int limit, long windowTicks)
    {
        _times[(_start + _count) % _times.Length] = now;
        _count++;
        return new RateDecision(true, limit, limit - _count, new DateTimeOffset(_times[_start] + windowTicks, TimeSpan.Zero), TimeSpan.Zero);
    }

    private void Resize(int limit)
    {
        var keep = Math.Min(_count, limit);
        var times = new long[limit];
        for (var i = 0; i < keep; i++)
        {
            times[i] = _times[(_start + _count - keep + i) % _times.Length];
        }
        _times = times;
        _start = 0;
        _count = keep;
    }
}

/// <summary>Counts (tokens, failures) per second over the last minute. Not thread-safe: callers lock.</summary>
internal sealed class MinuteCounter
{
    private readonly long[] _seconds = new long[60];
    private readonly long[] _tokens = new long[60];

    public void Add(DateTimeOffset now, long tokens)
    {
        var second = now.ToUnixTimeSeconds();
        var slot = (int)(second % 60);
        if (_seconds[slot] != second)
        {
            _seconds[slot] = second;
            _tokens[slot] = 0;
        }
        _tokens[slot] += tokens;
    }

    public (long Used, TimeSpan RetryAfter) Used(DateTimeOffset now)
    {
        var second = now.ToUnixTimeSeconds();
        long used = 0, oldest = long.MaxValue;
        for (var i = 0; i < 60; i++)
        {
            if (_seconds[i] > second - 60 && _tokens[i] > 0)
            {
                used += _tokens[i];
                oldest = Math.Min(oldest, _seconds[i]);
            }
        }
        return (used, used == 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(oldest + 60 - second));
    }
}

