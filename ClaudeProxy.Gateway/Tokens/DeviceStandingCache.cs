using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using Microsoft.EntityFrameworkCore;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// A device's standing (status and policy version). Redis holds it for every instance, beside the device's limit
/// keys and without expiry, and the admission script checks it in the same round trip as the limits; Postgres holds
/// the record it is seeded from. This class writes it to Redis whenever an operator changes it, and answers where
/// admission does not: for routes outside admission, and for admission while Redis is away. Those answers come
/// from a short local cache, emptied for a device the moment any instance changes it (Redis pub/sub), and filled
/// from Redis when it answers, else from Postgres.
/// </summary>
public sealed partial class DeviceStandingCache(
    IDbContextFactory<GatewayDbContext> contexts,
    BootstrapOptions bootstrap,
    TimeProvider time,
    ILogger<DeviceStandingCache> logger,
    Telemetry.BackgroundHealth health,
    IConnectionMultiplexer? redis = null,
    RedisAdmissionStore? store = null) : IDeviceStanding, IDeviceStandingSource, IHostedService
{
    public static readonly TimeSpan Ttl = TimeSpan.FromSeconds(30);
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:device-changed");
    public const string Service = "standing-subscriber";
    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    // Devices whose change is committed in Postgres but not yet written to Redis (it was away).
    private readonly ConcurrentDictionary<string, byte> _unshared = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private Task _sharing = Task.CompletedTask;
    private Task _subscribing = Task.CompletedTask;
    private int _warned;

    private sealed record Entry(DeviceStanding Standing, DateTimeOffset Expires);

    public bool RefusesUnknown => bootstrap.Mode == BootstrapMode.Closed;

    public async ValueTask<string?> CheckAsync(DeviceIdentity identity, CancellationToken cancellationToken) =>
        Refusals.StandingMessage(await CheckLocallyAsync(identity.DeviceId, identity.PolicyVersion, cancellationToken));

    public async ValueTask<AdmissionOutcome> CheckLocallyAsync(string deviceId, int tokenPolicyVersion, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (!_cache.TryGetValue(deviceId, out var entry) || entry.Expires <= now)
        {
            entry = await LoadAsync(deviceId, entry, now, cancellationToken);
        }
        return entry.Standing.Check(tokenPolicyVersion, RefusesUnknown);
    }

    public async ValueTask<DeviceStanding> ReadAsync(string deviceId, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var device = await db.Devices.AsNoTracking().Where(d => d.DeviceId == deviceId)
            .Select(d => new { d.Status, d.PolicyVersion }).FirstOrDefaultAsync(cancellationToken);
        return device is null ? new DeviceStanding(DeviceStanding.Unknown, 0) : new DeviceStanding(device.Status, device.PolicyVersion);
    }

    private async ValueTask<Entry> LoadAsync(string deviceId, Entry? stale, DateTimeOffset now, CancellationToken cancellationToken)
    {
        Entry entry;
        try
        {
            var shared = store is { IsConnected: true } ? await ReadSharedAsync(deviceId) : null;
            entry = new Entry(shared ?? await ReadAsync(deviceId, cancellationToken), now + Ttl);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // Postgres is away (refused, timed out, or EF gave up retrying): keep what was known; a device never
            // seen is let through rather than every device refused.
            if (Interlocked.Exchange(ref _warned, 1) == 0)
            {
                LogUnavailable(logger, e.GetType().Name);
            }
            entry = (stale ?? new Entry(new DeviceStanding(DeviceStanding.Active, 0), now)) with { Expires = now + TimeSpan.FromSeconds(5) };
        }
        _cache[deviceId] = entry;
        return entry;
    }

    private async Task<DeviceStanding?> ReadSharedAsync(string deviceId)
    {
        try
        {
            return await store!.ReadStandingAsync(deviceId);
        }
        catch (Exception e) when (RedisFailures.Is(e))
        {
            return null;
        }
    }

    /// <summary>
    /// Writes the device's standing from its record to Redis, forgets it here and tells every other instance to do
    /// the same. Call after the change is committed.
    /// </summary>
    public async Task ChangedAsync(string deviceId)
    {
        _cache.TryRemove(deviceId, out _);
        if (store is not null && !await ShareAsync(deviceId))
        {
            LogNotShared(logger, deviceId);
            _unshared[deviceId] = 0;
        }
        await PublishAsync(deviceId);
    }

    private async Task PublishAsync(string deviceId)
    {
        if (redis is not null)
        {
            try
            {
                await redis.GetSubscriber().PublishAsync(Channel, deviceId);
            }
            catch (Exception e) when (RedisFailures.Is(e))
            {
                LogUnavailable(logger, e.GetType().Name);
            }
        }
    }

    private async Task<bool> ShareAsync(string deviceId)
    {
        if (store is not { IsConnected: true })
        {
            return false;
        }
        try
        {
            await store.WriteStandingAsync(deviceId, await ReadAsync(deviceId, CancellationToken.None), operatorChange: true);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Redis away, or, when retried later, Postgres as well: the next round tries again.
            return false;
        }
    }

    /// <summary>Writes the standing of every device changed while Redis was away, once it is back, from Postgres as it is then.</summary>
    private async Task ShareLaterAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                foreach (var deviceId in _unshared.Keys)
                {
                    if (await ShareAsync(deviceId))
                    {
                        _unshared.TryRemove(deviceId, out _);
                        await PublishAsync(deviceId);
                    }
                }
                // PublishAsync and ShareAsync never throw for Redis or Postgres being away: this loop outlives outages.
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (store is not null)
        {
            _sharing = ShareLaterAsync(_stopping.Token);
        }
        if (redis is not null)
        {
            // In the background: an instance that starts while Redis is away serves, and subscribes once it is back.
            _subscribing = Telemetry.RedisSubscription.KeepAsync(redis.GetSubscriber(), Channel,
                (_, message) => _cache.TryRemove(message.ToString(), out Entry? _), health, Service, logger, _stopping.Token);
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _sharing.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
        await _subscribing.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Device standing could not be refreshed ({Reason}); the last known standing is used")]
    private static partial void LogUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The standing of device {DeviceId} is stored in Postgres but Redis is away: it is written there once Redis is back")]
    private static partial void LogNotShared(ILogger logger, string deviceId);
}
