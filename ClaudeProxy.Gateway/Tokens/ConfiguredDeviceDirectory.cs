using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Configuration;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// Without a database every device gets the configured default policy, and the keys devices enrol are kept in this
/// process (lost on restart, when devices enrol again).
/// </summary>
public sealed class ConfiguredDeviceDirectory(GatewayOptions options) : IDeviceDirectory
{
    private readonly ConcurrentDictionary<string, DeviceKey> _keys = new(StringComparer.Ordinal);

    public DevicePolicy DefaultPolicy { get; } = new(options.DefaultModels, options.RateLimitMax, null, options.DefaultSpendCap, 1);

    /// <summary>A new device record with the default policy: a device's first bootstrap, or a person's first sign-in.</summary>
    public Data.DeviceRecord NewRecord(string deviceId, string userId, string status, DateTimeOffset now) => new()
    {
        DeviceId = deviceId,
        UserId = userId,
        OrgId = options.OrgId,
        Status = status,
        Models = [.. DefaultPolicy.Models],
        RateLimit = DefaultPolicy.RateLimit,
        TokenLimit = DefaultPolicy.TokenLimit,
        SpendCap = DefaultPolicy.SpendCap,
        PolicyVersion = DefaultPolicy.PolicyVersion,
        FirstSeen = now,
        LastSeen = now,
    };

    public ValueTask<DeviceKey?> EnrolledKeyAsync(string deviceId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_keys.GetValueOrDefault(deviceId));

    public ValueTask<DeviceAdmission> BootstrapAsync(BootstrapRequest request, CancellationToken cancellationToken)
    {
        var enrolled = request.Key is { } offered ? _keys.GetOrAdd(request.DeviceId, offered) : _keys.GetValueOrDefault(request.DeviceId);
        return ValueTask.FromResult(enrolled is not null && enrolled != request.Key
            ? DeviceAdmission.NotItsKey(request.DeviceId, request.Key)
            : new DeviceAdmission(request.DeviceId, request.UserId ?? request.DeviceId, options.OrgId, DefaultPolicy));
    }

    public ValueTask<DeviceAdmission> RefreshAsync(DeviceIdentity identity, DeviceKey? key, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_keys.GetValueOrDefault(identity.DeviceId) is { } enrolled && enrolled != key
            ? DeviceAdmission.NotItsKey(identity.DeviceId, key)
            : new DeviceAdmission(identity.DeviceId, identity.UserId, identity.OrgId, DefaultPolicy));
}
