using System.Collections.Concurrent;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Devices this instance's last admission answer found out of requests, and until when: their next requests are
/// refused before their bodies are read and without asking Redis again. Fed only by admission answers (a refusal adds
/// the device, an admission removes it), and bounded: past <see cref="MaxDevices"/> expired entries are dropped, and
/// if none has expired a new refusal is simply not remembered (its device is then asked about in Redis, as before).
/// </summary>
public sealed class RateLimitedDevices(TimeProvider time)
{
    public const int MaxDevices = 10_000;

    private readonly ConcurrentDictionary<string, Entry> _until = new(StringComparer.Ordinal);
    private int _count;
    private long _lastSweepTicks;

    private readonly record struct Entry(DateTimeOffset Until, int Limit);

    /// <summary>
    /// True while the device is known to be out of requests under this same limit (a new token with another limit is
    /// asked about in Redis); <paramref name="refusal"/> then says what to tell the client.
    /// </summary>
    public bool IsRefused(string deviceId, int limit, out RateDecision refusal)
    {
        refusal = default;
        if (!_until.TryGetValue(deviceId, out var entry))
        {
            return false;
        }
        var now = time.GetUtcNow();
        if (entry.Until <= now || entry.Limit != limit)
        {
            Forget(deviceId);
            return false;
        }
        refusal = new RateDecision(false, limit, 0, entry.Until, entry.Until - now);
        return true;
    }

    /// <summary>Records an admission answer for the device.</summary>
    public void Observe(string deviceId, in Admission decision)
    {
        if (decision.Outcome == AdmissionOutcome.RateLimited)
        {
            // The reset the client was told, unless this clock runs behind the limiter's: then the wait it was told.
            var until = decision.Rate.ResetAt;
            var wait = time.GetUtcNow() + decision.RetryAfter;
            Remember(deviceId, new Entry(until < wait ? until : wait, decision.Rate.Limit));
        }
        else if (decision.Outcome == AdmissionOutcome.Admitted && _until.ContainsKey(deviceId))
        {
            Forget(deviceId);
        }
    }

    private void Remember(string deviceId, Entry entry)
    {
        // Only TryAdd adds and only TryRemove removes, so the count stays exact whatever runs at the same time.
        while (true)
        {
            if (_until.TryGetValue(deviceId, out var old))
            {
                if (_until.TryUpdate(deviceId, entry, old))
                {
                    return;
                }
                continue;
            }
            if (Volatile.Read(ref _count) >= MaxDevices && !Sweep())
            {
                return;
            }
            if (_until.TryAdd(deviceId, entry))
            {
                Interlocked.Increment(ref _count);
                return;
            }
        }
    }

    /// <summary>Drops expired entries, at most once a second; true when there is room afterwards.</summary>
    private bool Sweep()
    {
        // A full map of live entries must not cost a sweep per refusal.
        var now = time.GetUtcNow();
        var last = Interlocked.Read(ref _lastSweepTicks);
        if (now.UtcTicks - last >= TimeSpan.TicksPerSecond && Interlocked.CompareExchange(ref _lastSweepTicks, now.UtcTicks, last) == last)
        {
            foreach (var (id, old) in _until)
            {
                if (old.Until <= now)
                {
                    Forget(id);
                }
            }
        }
        return Volatile.Read(ref _count) < MaxDevices;
    }

    private void Forget(string deviceId)
    {
        if (_until.TryRemove(deviceId, out _))
        {
            Interlocked.Decrement(ref _count);
        }
    }

    /// <summary>Devices remembered now.</summary>
    public int Count => Volatile.Read(ref _count);
}
