using System.Collections.Concurrent;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// The sliding window log in process memory: exact for one instance. Each key keeps the admission times of at
/// most <c>limit</c> requests in a ring; a request is admitted when the oldest of them has left the window.
/// </summary>
public sealed class InMemoryRateLimiter(TimeProvider time) : IRateLimiter
{
    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);
    private long _calls;

    public ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Acquire(key, limit, window));

    public RateDecision Acquire(string key, int limit, TimeSpan window)
    {
        var now = time.GetUtcNow();
        if (Interlocked.Increment(ref _calls) % 8192 == 0)
        {
            Sweep(now);
        }
        var log = _windows.GetOrAdd(key, static _ => new Window());
        lock (log)
        {
            return log.Acquire(now.UtcTicks, limit, window.Ticks);
        }
    }

    private void Sweep(DateTimeOffset now)
    {
        foreach (var (key, log) in _windows)
        {
            lock (log)
            {
                if (log.IdleSince(now.UtcTicks))
                {
                    _windows.TryRemove(key, out _);
                }
            }
        }
    }

    private sealed class Window
    {
        private long[] _times = [];
        private int _start;
        private int _count;
        private long _windowTicks;

        public bool IdleSince(long now) => _count == 0 || _times[(_start + _count - 1) % _times.Length] + _windowTicks <= now;

        public RateDecision Acquire(long now, int limit, long windowTicks)
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
            _times[(_start + _count) % _times.Length] = now;
            _count++;
            var resetAt = _times[_start] + windowTicks;
            return new RateDecision(true, limit, limit - _count, new DateTimeOffset(resetAt, TimeSpan.Zero), TimeSpan.Zero);
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
}
