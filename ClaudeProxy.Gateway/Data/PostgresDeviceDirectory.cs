using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Data;

/// <summary>
/// Devices in Postgres. <c>/bootstrap</c> creates or touches the record; a revoked device stays revoked; in
/// approval mode a new device waits as pending; in closed mode only known devices get tokens. A device's first key
/// is enrolled with a conditional update, so of two enrolments at once exactly one key is kept.
/// </summary>
public sealed class PostgresDeviceDirectory(IDbContextFactory<GatewayDbContext> contexts, ConfiguredDeviceDirectory defaults,
    BootstrapOptions bootstrap, TimeProvider time, ILogger<PostgresDeviceDirectory> logger,
    Limits.RedisAdmissionStore? standing = null, Events.GatewayEvents? events = null) : IDeviceDirectory
{
    private readonly BootstrapMode mode = bootstrap.Mode;

    public async ValueTask<DeviceKey?> EnrolledKeyAsync(string deviceId, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var key = await db.Devices.AsNoTracking().Where(d => d.DeviceId == deviceId && d.PublicKey != null)
            .Select(d => new { d.PublicKey, d.KeyAlgorithm }).FirstOrDefaultAsync(cancellationToken);
        return key is null ? null : new DeviceKey(key.PublicKey!, key.KeyAlgorithm ?? DeviceKeys.P256);
    }

    public async ValueTask<DeviceAdmission> BootstrapAsync(BootstrapRequest request, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == request.DeviceId, cancellationToken);
        if (device is null)
        {
            if (mode == BootstrapMode.Closed)
            {
                return DeviceAdmission.Refuse(request.DeviceId, 403, "unknown device: this gateway only admits devices an operator has registered");
            }
            device = defaults.NewRecord(request.DeviceId, request.UserId ?? request.DeviceId,
                mode == BootstrapMode.Approval ? DeviceStatus.Pending : DeviceStatus.Active, now);
            device.AppVersion = request.AppVersion;
            device.PublicKey = request.Key?.PublicKey;
            device.KeyAlgorithm = request.Key?.Algorithm;
            device.KeyEnrolledAt = request.Key is null ? null : now;
            db.Devices.Add(device);
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                events?.Raise(device.Status == DeviceStatus.Pending ? EventTypes.DevicePendingApproval : EventTypes.DeviceEnrolled,
                    new System.Text.Json.Nodes.JsonObject { ["device_id"] = device.DeviceId, ["user_id"] = device.UserId, ["app_version"] = device.AppVersion,
                        ["via"] = "bootstrap" });
                await SeedStandingAsync(device);
                return Admit(device);
            }
            catch (DbUpdateException)
            {
                // Another instance registered it at the same moment: use that record.
                db.ChangeTracker.Clear();
                device = await db.Devices.FirstAsync(d => d.DeviceId == request.DeviceId, cancellationToken);
            }
        }
        if (device.PublicKey is null && request.Key is { } key)
        {
            var enrolled = await db.Devices.Where(d => d.DeviceId == request.DeviceId && d.PublicKey == null).ExecuteUpdateAsync(s => s
                .SetProperty(d => d.PublicKey, key.PublicKey)
                .SetProperty(d => d.KeyAlgorithm, key.Algorithm)
                .SetProperty(d => d.KeyEnrolledAt, now), cancellationToken);
            if (enrolled == 0)
            {
                // Another request enrolled a key for this device first: that key is the device's now.
                await db.Entry(device).ReloadAsync(cancellationToken);
            }
            else
            {
                (device.PublicKey, device.KeyAlgorithm, device.KeyEnrolledAt) = (key.PublicKey, key.Algorithm, now);
            }
        }
        if (!IsItsKey(device, request.Key))
        {
            return DeviceAdmission.NotItsKey(request.DeviceId, request.Key);
        }
        device.LastSeen = now;
        device.AppVersion = request.AppVersion ?? device.AppVersion;
        await db.SaveChangesAsync(cancellationToken);
        await SeedStandingAsync(device);
        return Admit(device);
    }

    public async ValueTask<DeviceAdmission> RefreshAsync(DeviceIdentity identity, DeviceKey? key, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == identity.DeviceId, cancellationToken);
        if (device is null)
        {
            return DeviceAdmission.Refuse(identity.DeviceId, 401, "unknown device: call POST /bootstrap again");
        }
        if (!IsItsKey(device, key))
        {
            return DeviceAdmission.NotItsKey(identity.DeviceId, key);
        }
        device.LastSeen = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        await SeedStandingAsync(device);
        return Admit(device);
    }

    private static bool IsItsKey(DeviceRecord device, DeviceKey? key) =>
        device.PublicKey is null || string.Equals(device.PublicKey, key?.PublicKey, StringComparison.Ordinal);

    /// <summary>
    /// Gives Redis the device's standing if it has none yet, so that its first request needs no seed; a standing Redis
    /// already holds is an operator's to change, never a bootstrap's.
    /// </summary>
    private Task SeedStandingAsync(DeviceRecord device) => Limits.RedisAdmissionStore.TrySeedStandingAsync(standing, device, logger);

    private static DeviceAdmission Admit(DeviceRecord device) => device.Status switch
    {
        DeviceStatus.Revoked => DeviceAdmission.Refuse(device.DeviceId, 403, "this device has been revoked by an operator"),
        DeviceStatus.Pending => DeviceAdmission.Refuse(device.DeviceId, 401, "this device is waiting for an operator's approval; try again once it is approved"),
        _ => new DeviceAdmission(device.DeviceId, device.UserId, device.OrgId,
            new DevicePolicy(device.Models, device.RateLimit, device.TokenLimit, device.SpendCap, device.PolicyVersion)),
    };
}

/// <summary>What a device spent since a moment, summed from the stored usage events.</summary>
public sealed class PostgresSpendHistory(IDbContextFactory<GatewayDbContext> contexts) : Limits.ISpendHistory
{
    public async ValueTask<long> SpentMicrosAsync(Limits.SpendCapKind kind, string subject, DateTimeOffset since, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var events = db.UsageEvents.Where(u => u.Time >= since);
        events = kind switch
        {
            Limits.SpendCapKind.Organization => events,
            // Group ids have one length and are separated by spaces, so no id matches inside another.
            Limits.SpendCapKind.GroupPool => events.Where(u => u.GroupIds != null && u.GroupIds.Contains(subject)),
            _ => events.Where(u => u.DeviceId == subject),
        };
        var spent = await events.SumAsync(u => u.CostUsd ?? 0m, cancellationToken);
        return (long)Math.Ceiling(spent * 1_000_000m);
    }
}
