using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Limits;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// Remembers the nonces of signed requests so that none is accepted twice: in Redis (SET NX PX, shared by every
/// instance) when it is configured, in this process otherwise. While Redis is away, <c>REDIS_FAILURE_MODE=open</c>
/// falls back to this process and <c>closed</c> refuses.
/// </summary>
public sealed partial class NonceStore(LimitOptions limits, TimeProvider time, ILogger<NonceStore> logger, IConnectionMultiplexer? redis = null)
{
    private const int PruneAbove = 10_000;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _local = new(StringComparer.Ordinal);
    private int _warned;

    /// <summary>True when the nonce is new (and is now used up), false when it was seen before, null when it cannot be checked.</summary>
    public async ValueTask<bool?> TryUseAsync(string deviceId, string nonce, CancellationToken cancellationToken)
    {
        var key = $"claudeproxy:nonce:{deviceId}:{nonce}";
        if (redis is not null)
        {
            try
            {
                return await redis.GetDatabase().StringSetAsync(key, "1", SignedRequest.NonceLifetime, When.NotExists).WaitAsync(cancellationToken);
            }
            catch (Exception e) when (Limits.RedisFailures.Is(e))
            {
                if (Interlocked.Exchange(ref _warned, 1) == 0)
                {
                    LogRedisUnavailable(logger, e.GetType().Name);
                }
                if (limits.FailureMode == RedisFailureMode.Closed)
                {
                    return null;
                }
            }
        }
        return UseLocally(key);
    }

    private bool UseLocally(string key)
    {
        var now = time.GetUtcNow();
        if (_local.Count > PruneAbove)
        {
            foreach (var (k, expires) in _local)
            {
                if (expires <= now)
                {
                    _local.TryRemove(k, out _);
                }
            }
        }
        var expiry = now + SignedRequest.NonceLifetime;
        while (true)
        {
            if (_local.TryAdd(key, expiry))
            {
                return true;
            }
            if (!_local.TryGetValue(key, out var seen))
            {
                continue;
            }
            if (seen > now)
            {
                return false;
            }
            if (_local.TryUpdate(key, expiry, seen))
            {
                return true;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Request nonces cannot be checked in Redis ({Reason}); see REDIS_FAILURE_MODE")]
    private static partial void LogRedisUnavailable(ILogger logger, string reason);
}
