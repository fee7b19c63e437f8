using System.Diagnostics;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Limits shared by every gateway instance: one Lua script, one round trip, checks the request limit (sliding
/// window log in a sorted set), the token budget (per-second buckets in a hash) and the spend cap (a counter per
/// period), and only when all pass records the admission and the spend reservation. Redis's own clock is used, so
/// instances with skewed clocks still agree. Keys carry the device id as a hash tag, so one device's keys live in
/// one Redis Cluster slot.
/// </summary>
public sealed class RedisAdmissionStore(IConnectionMultiplexer redis) : IAdmissionStore
{
    private static readonly ActivitySource Activity = new(TelemetryNames.GatewayActivitySource);

    // KEYS: rate zset, token hash, spend counter. ARGV: limit, window ms, member, token limit (0 = off),
    // cap micros (-1 = off, 0 = nothing may be spent), reserve micros, spend ttl ms, seed micros (-1 = unknown).
    // Returns {code, count, reset_in_ms, tokens_used, spent, now_ms}; code 0 admitted, 1 rate, 2 tokens, 3 spend, 4 seed needed.
    private const string AdmitScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        local count = redis.call('ZCARD', KEYS[1])
        local reset = window
        if count > 0 then
          reset = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + window - now
        end
        if count >= limit then
          return {1, count, reset, 0, 0, now}
        end
        local token_limit = tonumber(ARGV[4])
        if token_limit > 0 then
          local used = 0
          local oldest = -1
          local floor = math.floor(now / 1000) - 60
          local fields = redis.call('HGETALL', KEYS[2])
          for i = 1, #fields, 2 do
            local sec = tonumber(fields[i])
            if sec <= floor then
              redis.call('HDEL', KEYS[2], fields[i])
            else
              used = used + tonumber(fields[i + 1])
              if oldest < 0 or sec < oldest then oldest = sec end
            end
          end
          if used >= token_limit then
            return {2, count, (oldest + 61) * 1000 - now, used, 0, now}
          end
        end
        local cap = tonumber(ARGV[5])
        local spent = 0
        if cap >= 0 then
          local current = redis.call('GET', KEYS[3])
          if not current then
            local seed = tonumber(ARGV[8])
            if seed < 0 then
              return {4, count, reset, 0, 0, now}
            end
            redis.call('SET', KEYS[3], seed, 'PX', ARGV[7])
            current = seed
          end
          spent = tonumber(current)
          local reserve = tonumber(ARGV[6])
          if spent + reserve > cap then
            return {3, count, reset, 0, spent, now}
          end
          spent = redis.call('INCRBY', KEYS[3], reserve)
        end
        redis.call('ZADD', KEYS[1], now, ARGV[3])
        redis.call('PEXPIRE', KEYS[1], window)
        if count == 0 then reset = window end
        return {0, count + 1, reset, 0, spent, now}
        """;

    // KEYS: token hash, spend counter. ARGV: tokens, spend delta micros, spend ttl ms.
    private const string SettleScript = """
        local t = redis.call('TIME')
        local tokens = tonumber(ARGV[1])
        if tokens > 0 then
          redis.call('HINCRBY', KEYS[1], t[1], tokens)
          redis.call('EXPIRE', KEYS[1], 120)
        end
        local delta = tonumber(ARGV[2])
        if delta ~= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
          redis.call('INCRBY', KEYS[2], delta)
        end
        return 1
        """;

    // KEYS: rate zset. ARGV: limit, window ms, member. Returns {admitted, count, reset_in_ms, now_ms}.
    private const string AcquireScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        local count = redis.call('ZCARD', KEYS[1])
        local reset = window
        if count > 0 then
          reset = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + window - now
        end
        if count >= limit then
          return {0, count, reset, now}
        end
        redis.call('ZADD', KEYS[1], now, ARGV[3])
        redis.call('PEXPIRE', KEYS[1], window)
        return {1, count + 1, reset, now}
        """;

    public static string RateKey(string id) => "cp:{" + id + "}:rl";
    public static string TokenKey(string id) => "cp:{" + id + "}:tok";
    public static string SpendKey(string id, string period) => "cp:{" + id + "}:spend:" + period;

    public bool IsConnected => redis.IsConnected;

    public async ValueTask<(Admission Admission, bool NeedsSeed)> AdmitAsync(AdmissionRequest request, long? spentSeedMicros, CancellationToken cancellationToken)
    {
        using var activity = Activity.StartActivity("redis admit", ActivityKind.Client);
        var ttl = (long)Math.Max(1000, (request.SpendPeriodEnd - request.SpendPeriodStart).TotalMilliseconds + 86_400_000);
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AdmitScript,
            [RateKey(request.DeviceId), TokenKey(request.DeviceId), SpendKey(request.DeviceId, request.SpendPeriodId)],
            [request.RateLimit, (long)request.RateWindow.TotalMilliseconds, Guid.NewGuid().ToString("N"), request.TokenLimit ?? 0,
             request.SpendCapMicros, request.ReserveMicros, ttl, spentSeedMicros ?? -1]))!;
        var code = (int)result[0];
        var count = (int)result[1];
        var resetMs = Math.Max(0, (long)result[2]);
        var nowMs = (long)result[5];
        var resetAt = DateTimeOffset.FromUnixTimeMilliseconds(nowMs + resetMs);
        var limit = request.RateLimit;
        return code switch
        {
            0 => (new Admission(AdmissionOutcome.Admitted, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero),
                SpentMicros: (long)result[4], Reserved: request.SpendCapMicros >= 0), false),
            1 => (new Admission(AdmissionOutcome.RateLimited, new RateDecision(false, limit, 0, resetAt, TimeSpan.FromMilliseconds(resetMs)),
                TimeSpan.FromMilliseconds(resetMs)), false),
            2 => (new Admission(AdmissionOutcome.TokenBudgetExhausted, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero),
                TimeSpan.FromMilliseconds(resetMs), TokensUsed: (long)result[3]), false),
            3 => (new Admission(AdmissionOutcome.SpendCapReached, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero),
                SpentMicros: (long)result[4]), false),
            _ => (default, true),
        };
    }

    public async ValueTask SettleAsync(Settlement settlement, TimeSpan spendTtl, CancellationToken cancellationToken)
    {
        var delta = settlement.ReservedMicros > 0 ? settlement.ActualMicros - settlement.ReservedMicros : 0;
        if (settlement.Tokens <= 0 && delta == 0)
        {
            return;
        }
        await redis.GetDatabase().ScriptEvaluateAsync(SettleScript,
            [TokenKey(settlement.DeviceId), SpendKey(settlement.DeviceId, settlement.SpendPeriodId)],
            [settlement.Tokens, delta, (long)spendTtl.TotalMilliseconds]);
    }

    public async ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken)
    {
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AcquireScript,
            [RateKey(key)], [limit, (long)window.TotalMilliseconds, Guid.NewGuid().ToString("N")]))!;
        var allowed = (int)result[0] == 1;
        var count = (int)result[1];
        var resetMs = Math.Max(0, (long)result[2]);
        var resetAt = DateTimeOffset.FromUnixTimeMilliseconds((long)result[3] + resetMs);
        return new RateDecision(allowed, limit, allowed ? limit - count : 0, resetAt, allowed ? TimeSpan.Zero : TimeSpan.FromMilliseconds(resetMs));
    }
}
