using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// A device's current standing (status and policy version) as every instance sees it: a short local cache in
/// front of Postgres, emptied for a device the moment any instance changes it (Redis pub/sub). A token from before
/// a policy change is told to refresh; a revoked or pending device is refused. A cache miss reads Postgres once per
/// device per <see cref="Ttl"/>; every other request is answered from memory.
/// </summary>
public sealed partial class DeviceStandingCache(
    IDbContextFactory<GatewayDbContext> contexts,
    BootstrapOptions bootstrap,
    TimeProvider time,
    ILogger<DeviceStandingCache> logger,
    IConnectionMultiplexer? redis = null) : IDeviceStanding, IHostedService
{
    public static readonly TimeSpan Ttl = TimeSpan.FromSeconds(30);
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:device-changed");
    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    private int _warned;

    private sealed record Entry(string? Status, int PolicyVersion, DateTimeOffset Expires);

    public async ValueTask<string?> CheckAsync(DeviceIdentity identity, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (!_cache.TryGetValue(identity.DeviceId, out var entry) || entry.Expires <= now)
        {
            entry = await LoadAsync(identity.DeviceId, entry, now, cancellationToken);
        }
        return entry.Status switch
        {
            null => bootstrap.Mode == BootstrapMode.Closed ? "unknown device: this gateway only admits devices an operator has registered" : null,
            DeviceStatus.Revoked => "this device has been revoked by an operator",
            DeviceStatus.Pending => "this device is waiting for an operator's approval",
            _ when identity.PolicyVersion < entry.PolicyVersion => "this device's policy has changed: refresh the token with POST /refresh",
            _ => null,
        };
    }

    private async ValueTask<Entry> LoadAsync(string deviceId, Entry? stale, DateTimeOffset now, CancellationToken cancellationToken)
    {
        Entry entry;
        try
        {
            await using var db = await contexts.CreateDbContextAsync(cancellationToken);
            var device = await db.Devices.AsNoTracking().Where(d => d.DeviceId == deviceId)
                .Select(d => new { d.Status, d.PolicyVersion }).FirstOrDefaultAsync(cancellationToken);
            entry = new Entry(device?.Status, device?.PolicyVersion ?? 0, now + Ttl);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // Postgres is away (refused, timed out, or EF gave up retrying): keep what was known; a device never
            // seen is let through rather than every device refused.
            if (Interlocked.Exchange(ref _warned, 1) == 0)
            {
                LogUnavailable(logger, e.GetType().Name);
            }
            entry = (stale ?? new Entry(DeviceStatus.Active, 0, now)) with { Expires = now + TimeSpan.FromSeconds(5) };
        }
        _cache[deviceId] = entry;
        return entry;
    }

    /// <summary>Forgets the device here and tells every other instance to do the same.</summary>
    public async Task ChangedAsync(string deviceId)
    {
        _cache.TryRemove(deviceId, out _);
        if (redis is not null)
        {
            try
            {
                await redis.GetSubscriber().PublishAsync(Channel, deviceId);
            }
            catch (RedisException e)
            {
                LogUnavailable(logger, e.GetType().Name);
            }
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (redis is null)
        {
            return;
        }
        try
        {
            await redis.GetSubscriber().SubscribeAsync(Channel, (_, message) => _cache.TryRemove(message.ToString(), out Entry? _));
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogUnavailable(logger, e.GetType().Name);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Device standing could not be refreshed ({Reason}); the last known standing is used")]
    private static partial void LogUnavailable(ILogger logger, string reason);
}
