using System.Diagnostics;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Limits shared by every gateway instance: one Lua script, one round trip, checks the device's standing (status and
/// policy version), the request limit (sliding window log in a sorted set), the token budget (per-second buckets in
/// a hash) and the spend cap (a counter per period), and only when all pass records the admission and the spend
/// reservation. Redis's own clock is used, so instances with skewed clocks still agree. Device keys carry the device
/// id as a hash tag, so one device's keys live in one Redis Cluster slot; plain limiter keys live under
/// <c>cp:lim:</c>, a key space no device id can reach.
/// </summary>
public sealed class RedisAdmissionStore(IConnectionMultiplexer redis)
{
    private static readonly ActivitySource Activity = new(TelemetryNames.GatewayActivitySource);

    /// <summary>Seeds the admission script asked for, as bit flags: the standing's, and bit 2^(i+1) for the counter of cap i.</summary>
    [Flags]
    public enum Seeds : long { None = 0, Standing = 1 }

    /// <summary>At most this many caps apply to one request (the seed flags fit in a Lua number exactly).</summary>
    public const int MaxCaps = 48;

    /// <summary>True when the script asked for the seed of the counter of cap <paramref name="index"/>.</summary>
    public static bool NeedsSpendSeed(Seeds seeds, int index) => ((long)seeds & (2L << index)) != 0;

    /// <summary>The standing seed for a device whose record could not be read: check nothing, store nothing.</summary>
    public const string StandingUnreadable = "?";

    // Redis's clock in milliseconds, as `now`: instances with skewed clocks still agree.
    private const string RedisNow = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        """;

    // The sliding window log of a request limit, on KEYS[1] with ARGV[1] = limit and ARGV[2] = window ms: drops what
    // has left the window and leaves `count` (admissions still in it) and `reset` (ms until the oldest leaves).
    private const string SlidingWindow = """
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        local count = redis.call('ZCARD', KEYS[1])
        local reset = window
        if count > 0 then
          reset = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + window - now
        end
        """;

    // A settlement on the token hash at `tk` (tokens `stok`, in Redis's current second `t[1]`) and on spend counters: for
    // each j in 1..m, KEYS[kbase + j] gets delta ARGV[abase + 2j] if its generation is still ARGV[abase + 2j - 1] (a counter
    // rebuilt since was seeded from the usage Postgres holds, so it is left alone). The token hash holds one field per
    // second and, once an admission has counted them, `n` (their sum) and `o` (the oldest second): `n` is kept current here.
    private const string ApplySettlement = """
        if stok > 0 then
          redis.call('HINCRBY', tk, t[1], stok)
          if redis.call('HEXISTS', tk, 'n') == 1 then redis.call('HINCRBY', tk, 'n', stok) end
          redis.call('EXPIRE', tk, 120)
        end
        for j = 1, m do
          local delta = tonumber(ARGV[abase + 2 * j])
          if delta ~= 0 then
            local gen = redis.call('HGET', KEYS[kbase + j], 'g')
            if gen and tonumber(gen) == tonumber(ARGV[abase + 2 * j - 1]) then
              redis.call('HINCRBY', KEYS[kbase + j], 's', delta)
            end
          end
        end
        """;

    // KEYS: rate zset, token hash, standing hash (status, version), then one spend hash per cap (s = spent, g = generation).
    // ARGV: limit, window ms, member, token limit (0 = off), reserve micros, token policy version (-1 = standing not
    // checked), standing seed status ('' = none given), standing seed version, refuse unknown devices (1/0), number of
    // caps, then per cap: cap micros, spend ttl ms, spend seed micros (-1 = none given); then the device's settlements
    // carried by this admission, applied before anything is read: tokens, number of counters m, then per counter its
    // generation and delta micros (its key among KEYS after the caps').
    // Returns {outcome, count, reset_in_ms, tokens_used, now_ms, seeds needed, binding cap (1-based, 0 = none), then per
    // cap: spent, generation}. A cap's seed bit is 2^i; the standing's is 1.
    private static readonly string AdmitScript = $$"""
        {{RedisNow}}
        local version = tonumber(ARGV[6])
        local n = tonumber(ARGV[10])
        local tk = KEYS[2]
        local stok = tonumber(ARGV[11 + 3 * n])
        local m = tonumber(ARGV[12 + 3 * n])
        local kbase = 3 + n
        local abase = 12 + 3 * n
        {{ApplySettlement}}
        local status = false
        local current = 0
        local seeds = 0
        local none = {}
        if version >= 0 then
          local standing = redis.call('HMGET', KEYS[3], 'status', 'version')
          status = standing[1]
          current = tonumber(standing[2]) or 0
          if not status and ARGV[7] == '' then seeds = {{(int)Seeds.Standing}} end
        end
        local spend = {}
        for i = 1, n do
          spend[i] = redis.call('HMGET', KEYS[3 + i], 's', 'g')
          if not spend[i][1] and tonumber(ARGV[10 + 3 * i]) < 0 then seeds = seeds + 2 ^ i end
        end
        if seeds > 0 then
          return {{{(int)AdmissionOutcome.SeedNeeded}}, 0, 0, 0, now, seeds, 0, unpack(none)}
        end
        if version >= 0 then
          if not status then
            status = ARGV[7]
            current = tonumber(ARGV[8])
            if status ~= '{{StandingUnreadable}}' then
              redis.call('HSET', KEYS[3], 'status', status, 'version', current)
              if status == '{{DeviceStanding.Unknown}}' then redis.call('PEXPIRE', KEYS[3], {{UnknownStandingTtlMs}}) end
            end
          end
          if status == '{{DeviceStanding.Revoked}}' then
            return {{{(int)AdmissionOutcome.Revoked}}, 0, 0, 0, now, 0, 0, unpack(none)}
          elseif status == '{{DeviceStanding.Pending}}' then
            return {{{(int)AdmissionOutcome.Pending}}, 0, 0, 0, now, 0, 0, unpack(none)}
          elseif status == '{{DeviceStanding.Unknown}}' then
            if ARGV[9] == '1' then return {{{(int)AdmissionOutcome.UnknownDevice}}, 0, 0, 0, now, 0, 0, unpack(none)} end
          elseif status ~= '{{StandingUnreadable}}' and version < current then
            return {{{(int)AdmissionOutcome.PolicyStale}}, 0, 0, 0, now, 0, 0, unpack(none)}
          end
        end
        local tail = {}
        for i = 1, n do
          if not spend[i][1] then
            tail[2 * i - 1] = tonumber(ARGV[10 + 3 * i])
            tail[2 * i] = now
            redis.call('HSET', KEYS[3 + i], 's', tail[2 * i - 1], 'g', now)
            redis.call('PEXPIRE', KEYS[3 + i], ARGV[9 + 3 * i])
          else
            tail[2 * i - 1] = tonumber(spend[i][1])
            tail[2 * i] = tonumber(spend[i][2]) or 0
          end
        end
        {{SlidingWindow}}
        if count >= limit then
          return {{{(int)AdmissionOutcome.RateLimited}}, count, reset, 0, now, 0, 0, unpack(tail)}
        end
        local token_limit = tonumber(ARGV[4])
        if token_limit > 0 then
          -- The minute's tokens are `n`, kept by every settlement, while no second in it is older than a minute; the
          -- seconds are counted again (and the old ones dropped) only when one is, at most once a second per device.
          local floor = math.floor(now / 1000) - 60
          local meta = redis.call('HMGET', KEYS[2], 'n', 'o')
          local used = tonumber(meta[1])
          local oldest = tonumber(meta[2]) or -1
          if used == nil or oldest <= floor then
            used = 0
            oldest = -1
            local fields = redis.call('HGETALL', KEYS[2])
            for i = 1, #fields, 2 do
              local sec = tonumber(fields[i])
              if sec then
                if sec <= floor then
                  redis.call('HDEL', KEYS[2], fields[i])
                else
                  used = used + tonumber(fields[i + 1])
                  if oldest < 0 or sec < oldest then oldest = sec end
                end
              end
            end
            if oldest >= 0 then
              redis.call('HSET', KEYS[2], 'n', used, 'o', oldest)
            else
              redis.call('HDEL', KEYS[2], 'n', 'o')
            end
          end
          if used >= token_limit then
            return {{{(int)AdmissionOutcome.TokenBudgetExhausted}}, count, (oldest + 61) * 1000 - now, used, now, 0, 0, unpack(tail)}
          end
        end
        local reserve = tonumber(ARGV[5])
        for i = 1, n do
          if tail[2 * i - 1] + reserve > tonumber(ARGV[8 + 3 * i]) then
            return {{{(int)AdmissionOutcome.SpendCapReached}}, count, reset, 0, now, 0, i, unpack(tail)}
          end
        end
        for i = 1, n do
          tail[2 * i - 1] = redis.call('HINCRBY', KEYS[3 + i], 's', reserve)
        end
        redis.call('ZADD', KEYS[1], now, ARGV[3])
        redis.call('PEXPIRE', KEYS[1], window)
        if count == 0 then reset = window end
        return {{{(int)AdmissionOutcome.Admitted}}, count + 1, reset, 0, now, 0, 0, unpack(tail)}
        """;

    // KEYS: token hash, then spend hashes. ARGV: tokens, then per spend hash: the generation the reservation went into
    // (or, for spend made in process while Redis was away, the one last seen) and the delta micros.
    private static readonly string SettleScript = $$"""
        local t = redis.call('TIME')
        local tk = KEYS[1]
        local stok = tonumber(ARGV[1])
        local m = #KEYS - 1
        local kbase = 1
        local abase = 1
        {{ApplySettlement}}
        return 1
        """;

    // KEYS: rate zset. ARGV: limit, window ms, member. Returns {admitted, count, reset_in_ms, now_ms}.
    private const string AcquireScript = $$"""
        {{RedisNow}}
        {{SlidingWindow}}
        if count >= limit then
          return {0, count, reset, now}
        end
        redis.call('ZADD', KEYS[1], now, ARGV[3])
        redis.call('PEXPIRE', KEYS[1], window)
        return {1, count + 1, reset, now}
        """;

    // KEYS: standing hash. ARGV: status, version, 1 = an operator's change (replaces anything not newer),
    // 0 = a seed (only where nothing or an unknown device is recorded). A known device's standing never expires.
    private const string StandingScript = """
        local status = redis.call('HGET', KEYS[1], 'status')
        local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
        local incoming = tonumber(ARGV[2])
        if ARGV[3] == '1' then
          if status and version > incoming then return 0 end
        elseif status and status ~= 'unknown' then
          return 0
        end
        redis.call('HSET', KEYS[1], 'status', ARGV[1], 'version', incoming)
        redis.call('PERSIST', KEYS[1])
        return 1
        """;

    private const int UnknownStandingTtlMs = 30_000;

    /// <summary>The admission script as Redis runs it, its outcome codes written from <see cref="AdmissionOutcome"/>.</summary>
    internal static string AdmitScriptText => AdmitScript;

    /// <summary>The settlement script as Redis runs it.</summary>
    internal static string SettleScriptText => SettleScript;

    /// <summary>The outcomes the admission script returns; the others (Redis unavailable, spend unknown) are decided in the service.</summary>
    internal static bool IsScriptOutcome(AdmissionOutcome outcome) => outcome < AdmissionOutcome.Unavailable;

    public static string RateKey(string id) => "cp:{" + id + "}:rl";
    public static string TokenKey(string id) => "cp:{" + id + "}:tok";
    public static string SpendKey(string id, string period) => "cp:{" + id + "}:cap:" + period;
    /// <summary>A group's pool, in its own slot; <c>#</c> is in no device id.</summary>
    public static string PoolKey(string groupId, string period) => "cp:{#" + groupId + "}:pool:" + period;
    /// <summary>The organisation's spend.</summary>
    public static string OrganizationKey(string period) => "cp:{#org}:spend:" + period;
    public static string StandingKey(string id) => "cp:{" + id + "}:standing";
    public static string LimiterKey(string key) => "cp:lim:{" + key + "}:rl";

    public bool IsConnected => redis.IsConnected;

    // A device's own keys, made once rather than for every request; forgotten in bulk when there are too many.
    private sealed record DeviceKeys(RedisKey Rate, RedisKey Tokens, RedisKey Standing);
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, DeviceKeys> KeysByDevice = new(StringComparer.Ordinal);
    private const int MaxKeyedDevices = 100_000;

    private static DeviceKeys DeviceKeysOf(string deviceId)
    {
        if (KeysByDevice.TryGetValue(deviceId, out var keys))
        {
            return keys;
        }
        if (KeysByDevice.Count >= MaxKeyedDevices)
        {
            KeysByDevice.Clear();
        }
        return KeysByDevice[deviceId] = new DeviceKeys(RateKey(deviceId), TokenKey(deviceId), StandingKey(deviceId));
    }

    // A request's entry in a sliding window log: unique across instances (a random prefix per process) and short.
    private static readonly string MemberPrefix = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
    private static long _members;

    private static string Member() => string.Create(null, stackalloc char[40], $"{MemberPrefix}{Interlocked.Increment(ref _members):x}");

    /// <summary>
    /// Runs the admission script. <paramref name="standingChecked"/> false leaves standing alone (no device records).
    /// Returns the seeds the script asked for instead of deciding, when it lacks the device's standing or a spend
    /// counter; <paramref name="spendSeeds"/> gives each cap's (null: none given).
    /// </summary>
    public async ValueTask<(Admission Admission, Seeds Needed)> AdmitAsync(AdmissionRequest request, bool standingChecked, bool refuseUnknown,
        DeviceStanding? standingSeed, long?[]? spendSeeds, SettlementBatch? carried = null)
    {
        using var activity = Activity.StartActivity("redis admit", ActivityKind.Client);
        var caps = request.Caps;
        var spend = carried?.Spend ?? [];
        var keys = new RedisKey[3 + caps.Length + spend.Count];
        var device = DeviceKeysOf(request.DeviceId);
        keys[0] = device.Rate;
        keys[1] = device.Tokens;
        keys[2] = device.Standing;
        var args = new RedisValue[12 + 3 * caps.Length + 2 * spend.Count];
        args[0] = request.RateLimit;
        args[1] = (long)request.RateWindow.TotalMilliseconds;
        args[2] = Member();
        args[3] = request.TokenLimit ?? 0;
        args[4] = request.ReserveMicros;
        args[5] = standingChecked ? Math.Max(0, request.PolicyVersion) : -1;
        args[6] = standingSeed?.Status ?? "";
        args[7] = standingSeed?.PolicyVersion ?? 0;
        args[8] = refuseUnknown ? 1 : 0;
        args[9] = caps.Length;
        for (var i = 0; i < caps.Length; i++)
        {
            var cap = caps[i];
            keys[3 + i] = cap.Counter;
            args[10 + 3 * i] = cap.CapMicros;
            args[11 + 3 * i] = (long)Math.Max(1000, (cap.PeriodEnd - cap.PeriodStart).TotalMilliseconds + 86_400_000);
            args[12 + 3 * i] = spendSeeds?[i] ?? -1;
        }
        var at = 10 + 3 * caps.Length;
        args[at] = carried?.Tokens ?? 0;
        args[at + 1] = spend.Count;
        for (var j = 0; j < spend.Count; j++)
        {
            keys[3 + caps.Length + j] = spend[j].Counter;
            args[at + 2 + 2 * j] = spend[j].Generation;
            args[at + 3 + 2 * j] = spend[j].DeltaMicros;
        }
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AdmitScript, keys, args))!;
        var outcome = (AdmissionOutcome)(int)result[0];
        if (outcome == AdmissionOutcome.SeedNeeded)
        {
            return (default, (Seeds)(long)result[5]);
        }
        var count = (int)result[1];
        var resetMs = Math.Max(0, (long)result[2]);
        var nowMs = (long)result[4];
        long[]? spent = null;
        long[]? generations = null;
        if (result.Length > 7)
        {
            spent = new long[caps.Length];
            generations = new long[caps.Length];
            for (var i = 0; i < caps.Length; i++)
            {
                spent[i] = (long)result[7 + 2 * i];
                generations[i] = (long)result[8 + 2 * i];
            }
        }
        var binding = (int)result[6] - 1;
        if (binding < 0 && spent is not null)
        {
            binding = Admission.Closest(caps, spent, outcome == AdmissionOutcome.Admitted ? request.ReserveMicros : 0);
        }
        var resetAt = DateTimeOffset.FromUnixTimeMilliseconds(nowMs + resetMs);
        var limit = request.RateLimit;
        var admission = outcome switch
        {
            AdmissionOutcome.Admitted => new Admission(outcome, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero),
                Reserved: caps.Length > 0),
            AdmissionOutcome.RateLimited => new Admission(outcome, new RateDecision(false, limit, 0, resetAt, TimeSpan.FromMilliseconds(resetMs)),
                TimeSpan.FromMilliseconds(resetMs)),
            AdmissionOutcome.TokenBudgetExhausted => new Admission(outcome, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero),
                TimeSpan.FromMilliseconds(resetMs), TokensUsed: (long)result[3]),
            AdmissionOutcome.SpendCapReached => new Admission(outcome, new RateDecision(true, limit, limit - count, resetAt, TimeSpan.Zero)),
            _ => new Admission(outcome, default),
        };
        return (admission with { Store = AdmissionStore.Redis, Spent = spent, Generations = generations, Binding = binding }, Seeds.None);
    }

    public ValueTask SettleAsync(Settlement settlement) => SettleAsync(SettlementBatch.Of([settlement]));

    /// <summary>Applies one device's settlements, summed, in one script.</summary>
    public async ValueTask SettleAsync(SettlementBatch batch)
    {
        if (batch.IsEmpty)
        {
            return;
        }
        var keys = new RedisKey[1 + batch.Spend.Count];
        keys[0] = DeviceKeysOf(batch.DeviceId).Tokens;
        var args = new RedisValue[1 + 2 * batch.Spend.Count];
        args[0] = batch.Tokens;
        for (var j = 0; j < batch.Spend.Count; j++)
        {
            keys[1 + j] = batch.Spend[j].Counter;
            args[1 + 2 * j] = batch.Spend[j].Generation;
            args[2 + 2 * j] = batch.Spend[j].DeltaMicros;
        }
        await redis.GetDatabase().ScriptEvaluateAsync(SettleScript, keys, args);
    }

    public async ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window)
    {
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AcquireScript,
            [LimiterKey(key)], [limit, (long)window.TotalMilliseconds, Member()]))!;
        var allowed = (int)result[0] == 1;
        var count = (int)result[1];
        var resetMs = Math.Max(0, (long)result[2]);
        var resetAt = DateTimeOffset.FromUnixTimeMilliseconds((long)result[3] + resetMs);
        return new RateDecision(allowed, limit, allowed ? limit - count : 0, resetAt, allowed ? TimeSpan.Zero : TimeSpan.FromMilliseconds(resetMs));
    }

    /// <summary>
    /// Records a device's standing where every admission sees it. An operator's change replaces whatever is not newer;
    /// a seed (bootstrap, refresh) only fills in a device Redis knows nothing of, so it never undoes a revocation.
    /// </summary>
    public async Task WriteStandingAsync(string deviceId, DeviceStanding standing, bool operatorChange)
    {
        await redis.GetDatabase().ScriptEvaluateAsync(StandingScript, [StandingKey(deviceId)],
            [standing.Status, standing.PolicyVersion, operatorChange ? 1 : 0]);
    }

    /// <summary>
    /// Seeds a device record's standing where Redis has none (never over an operator's change), when Redis is there;
    /// otherwise the admission script seeds it from Postgres at the device's first request.
    /// </summary>
    public static async Task TrySeedStandingAsync(RedisAdmissionStore? store, Data.DeviceRecord device, ILogger logger)
    {
        if (store is not { IsConnected: true })
        {
            return;
        }
        try
        {
            await store.WriteStandingAsync(device.DeviceId, new DeviceStanding(device.Status, device.PolicyVersion), operatorChange: false);
        }
        catch (Exception e) when (RedisFailures.Is(e))
        {
            logger.LogDebug("A device's standing could not be given to Redis ({Reason}); its first request seeds it", e.GetType().Name);
        }
    }

    /// <summary>The standing Redis holds for a device, or null when it holds none.</summary>
    public async Task<DeviceStanding?> ReadStandingAsync(string deviceId)
    {
        var values = await redis.GetDatabase().HashGetAsync(StandingKey(deviceId), ["status", "version"]);
        return values[0].IsNull ? null : new DeviceStanding(values[0].ToString(), (int)(values[1].IsNull ? 0 : (long)values[1]));
    }
}
